# Copyright (c) walship developers
#
# t/WalshipOrders.pm
#	  The orders workload of the worker tests that ship into ClickHouse
#	  (t/048_clickhouse_rowbinary.pl, t/049_clickhouse_managed.pl): pgbench
#	  scripts that insert orders, change totals, change keys and delete
#	  orders of an orders table (id an identity column, country, total),
#	  run in a loop that survives crash restarts (start_workload() of
#	  WalshipTest.pm), and SIGKILLs of the worker while it has requests in
#	  flight (worker_pid_mid_batch() serves t/040_clickhouse.pl too).
#
#	  crash_worker() makes the assertions of a crash; the other functions
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

our @EXPORT = qw(start_orders_workload worker_pid_mid_batch crash_worker);

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

1;
