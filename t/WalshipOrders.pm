# Copyright (c) walship developers
#
# t/WalshipOrders.pm
#	  The orders workload of the worker tests that ship into ClickHouse
#	  (t/048_clickhouse_rowbinary.pl, t/049_clickhouse_managed.pl): pgbench
#	  scripts that insert orders, change totals, change keys and delete
#	  orders of an orders table (id an identity column, country, total),
#	  run in a loop that survives crash restarts (start_workload() of
#	  WalshipTest.pm), and SIGKILLs of the worker while it has requests in
#	  flight (worker_pid_mid_batch() serves t/040_clickhouse.pl too), and
#	  the managed-table scenario of t/049 and t/051_clickhouse_managed_ndjson.pl
#	  (check_managed_orders()).
#
#	  crash_worker(), check_managed_orders(), check_created_orders_table()
#	  and check_lost_ack_stored_once() make assertions; the other functions
#	  make none.
#
# IDENTIFICATION
#	  t/WalshipOrders.pm

package WalshipOrders;

use strict;
use warnings;

use Exporter 'import';
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use WalshipTest;

our @EXPORT = qw(start_orders_workload worker_pid_mid_batch crash_worker check_managed_orders
  check_created_orders_table check_lost_ack_stored_once);

# Starts the orders workload on table $table of $node for 3 s runs (in a
# loop until stop_workload()) at $rate transactions a second, over 3
# connections; its scripts go to $dir.  New orders get a note (NULL for
# 30%) when $o{note}.  Weights: 10 new orders (1 to 3 rows), 4 total
# changes, 1 key change, 2 deletes; the last three pick one of the newest
# 300 orders.
sub start_orders_workload
{
	my ($node, $dir, $table, $rate, %o) = @_;
	my $countries = q{'{AU,BR,DE,FR,GB,IN,JP,US}'::text[]};
	my $pick = qq{(SELECT id FROM $table WHERE id <= (SELECT max(id) FROM $table) - :k ORDER BY id DESC LIMIT 1)};
	my ($note_col, $note_val) = $o{note}
	  ? (', note', ",\n       CASE WHEN random() < 0.3 THEN NULL ELSE 'note ' || random() END")
	  : ('', '');
	my %scripts = (
		'new_orders.sql@10' => qq{\\set n random(1, 3)
INSERT INTO $table (country, total$note_col)
SELECT ($countries)[1 + floor(random() * 8)::int], round((5 + random() * 495)::numeric, 2)$note_val
  FROM generate_series(1, :n);
},
		'change_total.sql@4' => qq{\\set k random(0, 300)
UPDATE $table SET total = round(total * (0.5 + random())::numeric, 2) WHERE id = $pick;
},
		'change_key.sql@1' => qq{\\set k random(0, 300)
UPDATE $table SET id = nextval(pg_get_serial_sequence('$table', 'id')) WHERE id = $pick;
},
		'cancel.sql@2' => qq{\\set k random(0, 300)
DELETE FROM $table WHERE id = $pick;
},
	);
	my @files;
	foreach my $name (sort keys %scripts)
	{
		my ($file) = $name =~ /^([^@]+)/;
		PostgreSQL::Test::Utils::append_to_file("$dir/$file", $scripts{$name});
		push @files, '-f', "$dir/$name";
	}
	return start_workload($node, $dir, '-c', 3, '-R', $rate, '-T', 3,
		'--max-tries=20', @files);
}

# Polls walship.status for up to 10 s for a streaming worker with requests
# in flight: (its pid, 1); else (the last streaming worker's pid or undef,
# 0).
sub worker_pid_mid_batch
{
	my ($node) = @_;
	my $deadline = time + 10;
	my $pid;
	while (time < $deadline)
	{
		my ($p, $inflight) = streaming_worker_inflight($node);
		if (defined $p && $p > 0)
		{
			$pid = $p;
			return ($pid, 1) if $inflight > 0;
		}
		sleep 0.01;
	}
	return ($pid, 0);
}

# SIGKILL of the worker, mid-batch if it can be caught so, and the wait for
# the worker after the crash restart; asserts both, named "$label: ...".
# False if there was no worker to kill.
sub crash_worker
{
	my ($node, $label) = @_;
	my ($victim, $inflight) = worker_pid_mid_batch($node);
	ok($victim, "$label: the worker runs") or return 0;
	kill_worker($victim, $inflight ? ' with requests in flight' : '');
	ok(wait_for_new_worker($node, $victim),
		"$label: a new worker streams after the crash restart");
	return 1;
}

# The managed-table scenario of t/049 (RowBinary) and t/051 (NDJSON) on
# $node's "orders" (with columns legacy and small) and "items" (id, qty, v,
# old_name), $ch being ClickHouse with walship.clickhouse_manage_tables on:
# the orders workload with ADD COLUMN, DROP COLUMN and int->bigint and two
# SIGKILLs, then ClickHouse FINAL = PostgreSQL; the policies for an
# incompatible type change, a rename and a column wider in ClickHouse.
# $o{t} has the dialect's ts, op and micros; $o{wider} says how rows
# reach a column wider in ClickHouse.
sub check_managed_orders
{
	my ($node, $ch, $dir, %o) = @_;
	my ($dialect, $t, $wider) = @o{qw(dialect t wider)};
	my $psql = sub { return $node->safe_psql('postgres', $_[0]); };
	my $ch_columns = sub {
		return $ch->query(q{SELECT name, type FROM system.columns WHERE database = 'shop' AND table = 'orders' FORMAT TSV});
	};
	my $workload = start_orders_workload($node, $dir, 'orders', 200);


	sleep 2;
	$psql->(q{ALTER TABLE orders ADD COLUMN note text});
	$psql->(q{UPDATE orders SET note = 'note ' || id WHERE id % 3 = 0});
	ok(poll_value($ch_columns, sub { $_[0] =~ /^note\tNullable\(String\)$/m }),
		'ADD COLUMN: the column is added in ClickHouse');
	crash_worker($node, "crash 1");
	sleep 1;
	$psql->(q{UPDATE orders SET note = 'later ' || id WHERE id % 5 = 0});
	$psql->(q{ALTER TABLE orders DROP COLUMN legacy});
	$psql->(q{ALTER TABLE orders ALTER COLUMN small TYPE bigint});
	$psql->(q{UPDATE orders SET small = id * 1000000000 WHERE id % 7 = 0});
	ok(poll_value($ch_columns, sub { $_[0] !~ /^legacy\t/m && $_[0] =~ /^small\tNullable\(Int64\)$/m }),
		'DROP COLUMN and a widening type change: made in ClickHouse')
	  or diag($ch_columns->());
	crash_worker($node, "crash 2");
	sleep 2;
	stop_workload($workload);

	my $end_lsn = $psql->('SELECT pg_current_wal_lsn()');
	ok(wait_worker_caught_up($node, $end_lsn), "caught up to $end_lsn")
	  or diag($psql->('SELECT * FROM walship.status'));
	is($psql->(q{SELECT rejected_batches || ' ' || coalesce(last_error, '') FROM walship.status}),
		'0 ', 'nothing rejected, no error');

	my $pg = $psql->(q{
	SELECT concat_ws(' ', id, country, (total * 100)::bigint, coalesce(small::text, 'NULL'),
	                 (extract(epoch FROM created_at) * 1000000)::bigint, coalesce(note, 'NULL'))
	  FROM orders ORDER BY id});
	my $chrows = $ch->query(q{
	SELECT concat(toString(id), ' ', country, ' ', toString(toInt64(total * 100)), ' ', ifNull(toString(small), 'NULL'), ' ',
	              } . sprintf($t->{micros}, 'created_at') . q{, ' ', ifNull(note, 'NULL'))
	  FROM shop.orders FINAL WHERE NOT _deleted ORDER BY id FORMAT TSV});
	$chrows =~ s/\n\z//;
	cmp_ok(scalar(split /\n/, $pg), '>', 200, 'the workload left orders');
	is($chrows, $pg, 'every order, the added column and the widened one included: ClickHouse FINAL = PostgreSQL');
	is($ch_columns->(),
		join('', map { "$_\n" } "id\tInt64", "country\tString", "total\tDecimal(12, 2)",
			"small\tNullable(Int64)", "created_at\t$t->{ts}", "note\tNullable(String)",
			"_op\t$t->{op}", "_lsn\tUInt64", "_seq\tUInt64", "_version\tUInt64",
			"_commit_ts\t$t->{ts}", "_deleted\tUInt8"),
		'ClickHouse has the columns of the PostgreSQL table, in order (the dropped one gone)');

	# ---------------------------------------------------------------------------
	# Policies: an incompatible type change, a rename
	# ---------------------------------------------------------------------------
	$psql->(q{INSERT INTO items VALUES (1, 10, 'a'), (2, 20, 'b')});
	ok(poll_value(sub { $ch->query_value(q{SELECT count() FROM system.tables WHERE database = 'shop' AND name = 'items'}) }, sub { $_[0] eq '1' })
		  && poll_value(sub { $ch->query_value(q{SELECT count() FROM shop.items}) }, sub { $_[0] eq '2' }),
		'items: created and filled');

	$psql->(q{ALTER TABLE items ALTER COLUMN v TYPE text USING 'v' || v});
	$psql->(q{UPDATE items SET v = 'x' WHERE id = 1});
	ok($node->poll_query_until('postgres', q{
	SELECT state = 'error'
	   AND last_error = 'column `v` of ClickHouse table `shop`.`items` has type Nullable(Int32), but walship writes Nullable(String)'
	  FROM walship.status}), 'integer to text: not made; the status says which column')
	  or diag($psql->('SELECT * FROM walship.status'));
	sleep 1;
	is($ch->query_value(q{SELECT count() FROM shop.items}), '2', '... and no row of the new shape was sent');
	is($ch->query_value(q{SELECT type FROM system.columns WHERE database = 'shop' AND table = 'items' AND name = 'v'}),
		'Nullable(Int32)', '... nor the column changed');

	# fixed by hand in ClickHouse: the rows go
	$ch->query(q{ALTER TABLE shop.items MODIFY COLUMN v Nullable(String)});
	ok($node->poll_query_until('postgres', q{SELECT state = 'streaming' AND last_error IS NULL FROM walship.status}),
		'after the column was changed by hand the worker streams again');
	ok(poll_value(sub { $ch->query(q{SELECT id, v FROM shop.items FINAL WHERE NOT _deleted ORDER BY id FORMAT TSV}) },
			sub { $_[0] eq "1\tx\n2\t20\n" }), '... and the rows arrived');

	$psql->(q{ALTER TABLE items RENAME COLUMN old_name TO new_name});
	$psql->(q{UPDATE items SET new_name = 'c' WHERE id = 2});
	ok(poll_value(sub { $ch->query(q{SELECT id, old_name, new_name FROM shop.items FINAL WHERE NOT _deleted ORDER BY id FORMAT TSV}) },
			sub { $_[0] eq "1\ta\t\\N\n2\t\\N\tc\n" }),
		'rename: the new column is added and filled from then on; the old one is kept, with the values of rows not changed since');
	like(slurp_file($node->logfile), qr/WARNING:  walship keeps column `old_name` of ClickHouse table `shop`.`items`/,
		'... with a WARNING');

	# A column wider in ClickHouse than the rows' type (what a restart meets
	# when it sends rows of a shape older than a widening again): not narrowed,
	# the rows are written in the table's type.
	$ch->query(q{ALTER TABLE shop.items MODIFY COLUMN qty Nullable(Int64)});
	$psql->(q{ALTER TABLE items ADD COLUMN extra int});
	$psql->(q{UPDATE items SET qty = 7, extra = 8 WHERE id = 1});
	ok(poll_value(sub { $ch->query(q{SELECT id, qty, extra FROM shop.items FINAL WHERE NOT _deleted ORDER BY id FORMAT TSV}) },
			sub { $_[0] eq "1\t7\t8\n2\t\\N\t\\N\n" }),
		"$dialect: a column wider in ClickHouse (Int64 for integer): rows $wider in its type")
	  or diag($ch->query(q{SELECT * FROM shop.items FORMAT TSV}), $psql->('SELECT * FROM walship.status'));
	is($ch->query_value(q{SELECT type FROM system.columns WHERE database = 'shop' AND table = 'items' AND name = 'qty'}),
		'Nullable(Int64)', "$dialect: ... and the column is not narrowed");
	return;
}


# ClickHouse table shop.orders, as walship.clickhouse_manage_tables creates
# it for $node's "orders": the columns clickhouse_ddl() declares and the
# engine of the dialect ($t: its ts, op and engine).
sub check_created_orders_table
{
	my ($ch, $dialect, $t) = @_;

	is($ch->query(q{SELECT name, type FROM system.columns WHERE database = 'shop' AND table = 'orders' FORMAT TSV}),
		join('', map { "$_\n" } "id\tInt64", "country\tString", "total\tDecimal(12, 2)",
			"legacy\tNullable(Int32)", "small\tNullable(Int32)", "created_at\t$t->{ts}",
			"_op\t$t->{op}", "_lsn\tUInt64", "_seq\tUInt64", "_version\tUInt64",
			"_commit_ts\t$t->{ts}", "_deleted\tUInt8"),
		"$dialect: the created table has the columns clickhouse_ddl() declares");
	like($ch->query_value(q{SELECT engine_full FROM system.tables WHERE database = 'shop' AND name = 'orders'}),
		$t->{engine}, "$dialect: ... and its engine");
	return;
}

# A lost acknowledgement ($ch a ClickHouse 26 adapter that can lose_acks:
# stored, then answered 500): a new published table "ledger" gets 500 rows
# in one request whose acknowledgement is lost; the retry carries the same
# insert_deduplication_token and is not stored again.  $format names the
# format of the requests, $insert_re matches their query.
sub check_lost_ack_stored_once
{
	my ($node, $ch, $dialect, $format, $insert_re) = @_;

	$node->safe_psql('postgres', q{CREATE TABLE ledger (id int PRIMARY KEY, amount int NOT NULL);
	       ALTER PUBLICATION shop ADD TABLE ledger;
	       INSERT INTO ledger VALUES (0, 0)});
	ok(poll_value(sub { $ch->query_value(q{SELECT count() FROM shop.ledger}) }, sub { $_[0] eq '1' }),
		"$dialect: ledger created and filled");
	$ch->lose_acks(1);
	$node->safe_psql('postgres', q{INSERT INTO ledger SELECT i, i FROM generate_series(1, 500) i});
	ok(wait_worker_caught_up($node, $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()')),
		"$dialect: the retried request acknowledged");
	is($ch->query_value(q{SELECT count() FROM shop.ledger}), '501',
		"$dialect: a request whose acknowledgement was lost is stored once (count() without FINAL)");
	my @tokens = map { $_->{settings}{insert_deduplication_token} // '' }
	  grep { $_->{query} =~ $insert_re } @{ $ch->inserts };
	my %seen;
	$seen{$_}++ for @tokens;
	ok((grep { $_ ne '' && $seen{$_} >= 2 } keys %seen) == 1,
		"$dialect: the $format request was sent twice with one insert_deduplication_token")
	  or diag(join("\n", @tokens));
	return;
}

1;
