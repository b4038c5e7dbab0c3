# Copyright (c) walship developers
#
# t/051_clickhouse_managed_ndjson.pl
#	  Zero-touch ClickHouse tables with walship.format = 'ndjson' (flat
#	  shape, walship.clickhouse_manage_tables = on): the workload of
#	  t/049_clickhouse_managed.pl, on a real ClickHouse 18.16
#	  (t/WalshipClickHouse.pm, dialect clickhouse_18, gzip), then on
#	  ClickHouse 26 (chdb behind t/chdb_http.js, t/WalshipChdb.pm, dialect
#	  clickhouse, zstd).
#
#	  First the settings that cannot work with managed tables: the
#	  envelope shape (at worker start) and the standard dialect (at a
#	  reload) each give a WARNING saying why, and nothing is created.
#
#	  Then the orders workload runs with no ClickHouse table at all; the
#	  endpoint is the URL docs/clickhouse.md gives for NDJSON, whose query
#	  walship replaces by its own INSERT into walship.clickhouse_database,
#	  and input_format_skip_unknown_fields=0, so that a line with a column
#	  the table does not have (yet, or any more) is refused.  Mid-stream,
#	  with the worker killed with SIGKILL twice: ADD COLUMN (then filled by
#	  updates), DROP COLUMN, and integer to bigint.  Nothing may be
#	  rejected: lines of the old shape are stored before the DROP, lines
#	  of the new shape only after the ADD.  Once the worker caught up,
#	  SELECT ... FINAL WHERE NOT _deleted equals PostgreSQL row for row.
#
#	  Then the policies, as for RowBinary: integer to text is not made and
#	  reported until fixed by hand; a rename keeps the old column; a
#	  column wider in ClickHouse is not narrowed.  On ClickHouse 26 a
#	  request whose acknowledgement is lost is stored once.  Last, many
#	  relation shapes (ADD and DROP of a new column each time): the worker
#	  processes keep only the shapes in use, and the table checks' memory
#	  is freed after each (memory context statistics).  With encoder
#	  workers, a DROP COLUMN waits for old-shape rows another encoder
#	  still retries (ClickHouse 26).
#
#	  Skipped only when clickhouse-server is not installed.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use Cwd qw(abs_path);
use Time::HiRes qw(time sleep);
use WalshipChdb;
use WalshipClickHouse;
use WalshipOrders;
use WalshipTest;

my ($available, $why) = WalshipClickHouse->available;
plan skip_all => "clickhouse-server is not installed: $why" unless $available;

my $tmp = abs_path(PostgreSQL::Test::Utils::tempdir('clickhouse_managed_ndjson'));
my ($ch, $node, $dialect);

# What ClickHouse shows of the dialect's types
my %types = (
	clickhouse_18 => { ts => 'Int64', op => 'String', micros => 'toString(%s)',
		engine => qr/^ReplacingMergeTree\(_version\) ORDER BY id/ },
	# (TSV escapes the quotes)
	clickhouse => { ts => "DateTime64(6, \\'UTC\\')", op => 'LowCardinality(String)',
		micros => 'toString(toUnixTimestamp64Micro(%s))',
		engine => qr/^ReplacingMergeTree\(_version, _deleted\) ORDER BY \(?id\)? SETTINGS .*non_replicated_deduplication_window = 1000/ },);

sub psql { return $node->safe_psql('postgres', $_[0]); }

# Polls the server log until it matches $re; true if it did in time.
sub log_poll
{
	my ($re) = @_;
	return poll_value(sub { slurp_file($node->logfile) }, sub { $_[0] =~ $re });
}

sub scenario
{
	($ch, $dialect, my $compression) = @_;
	my $t = $types{$dialect};
	my $wdir = "$tmp/workload_$dialect";    # scripts, stop file
	mkdir $wdir or die "mkdir $wdir: $!";
	$ch->query('CREATE DATABASE shop');

# the endpoint docs/clickhouse.md gives for NDJSON: walship replaces its
# query by an INSERT into walship.clickhouse_database
my $endpoint = $ch->insert_url('shop.{table}',
	settings => { input_format_skip_unknown_fields => 0 });
$node = worker_node("managed_ndjson_$dialect", qq{
max_connections = 30
restart_after_crash = on
walship.database = 'postgres'
walship.publication = 'shop'
walship.endpoint = '$endpoint'
walship.format = 'ndjson'
walship.ndjson_shape = 'envelope'
walship.dialect = '$dialect'
walship.clickhouse_database = 'shop'
walship.clickhouse_manage_tables = on
walship.compression = '$compression'
walship.batch_max_changes = 100
walship.batch_max_delay = 20ms
walship.max_inflight = 4
walship.retry_min_delay = 20ms
walship.retry_max_delay = 500ms
});
$node->start;

# Settings that cannot work: a WARNING at worker start and at reload.
ok(log_poll(qr/WARNING:  walship.clickhouse_manage_tables = on has no effect: walship.ndjson_shape is envelope\n.*DETAIL:  Managed ClickHouse tables need walship.format = 'rowbinary', or walship.format = 'ndjson' with walship.ndjson_shape = 'flat'.*\n.*HINT:  Set walship.ndjson_shape = 'flat'/),
	"$dialect: envelope shape: a WARNING at worker start says why managed tables have no effect");
$node->append_conf('postgresql.conf', "walship.ndjson_shape = 'flat'\nwalship.dialect = 'standard'\n");
$node->reload;
ok(log_poll(qr/WARNING:  walship.clickhouse_manage_tables = on has no effect: walship.dialect is standard/),
	"$dialect: standard dialect: a WARNING at reload");
is($ch->query_value(q{SELECT count() FROM system.tables WHERE database = 'shop'}), '0',
	"$dialect: ... and no table was created");
# (a restart: every batch from now on is prepared with these settings)
$node->append_conf('postgresql.conf', "walship.dialect = '$dialect'\n");
$node->restart;

psql(q{
CREATE EXTENSION walship;
CREATE TABLE orders (
    id         bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    country    text NOT NULL,
    total      numeric(12,2) NOT NULL,
    legacy     int,
    small      int,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE items (id int PRIMARY KEY, v int, old_name text, qty int);
CREATE PUBLICATION shop FOR TABLE orders, items;
});
# the slot exists once the worker runs: changes from then on are shipped
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM pg_replication_slots WHERE slot_name = 'walship'}),
	'the worker created its slot');
psql(q{INSERT INTO orders (country, total, legacy, small) VALUES ('DE', 1, 1, 1)});
ok($node->poll_query_until('postgres', q{SELECT state = 'streaming' FROM walship.status}),
	'managed: the worker streams');
ok(poll_value(sub { $ch->query_value(q{SELECT count() FROM shop.orders}) // 0 },
		sub { $_[0] >= 1 }), '... into the table it created');
check_created_orders_table($ch, $dialect, $t);

# ---------------------------------------------------------------------------
# The workload with schema changes and SIGKILLs, and the policies
# (check_managed_orders() of WalshipOrders.pm)
# ---------------------------------------------------------------------------
check_managed_orders($node, $ch, $wdir, dialect => $dialect, t => $t,
	wider => 'stored');

# A lost acknowledgement (ClickHouse 26 adapter: stored, then answered
# 500): the retry carries the same insert_deduplication_token and is not
# stored again.
check_lost_ack_stored_once($node, $ch, $dialect, 'NDJSON', qr/^INSERT INTO `shop`.`ledger` FORMAT JSONEachRow/)
  if $ch->can('lose_acks');

# Encoder workers: rows of the old shape held by one encoder (its
# acknowledgement lost, the retry a second later) while the other gets the
# rows after a DROP COLUMN.  The DROP waits until the first encoder's
# request is done: run before, the retry would name a column that is gone
# and be refused.  Both encoders first see the old shape (the second gets
# a batch while the first waits for its retry).
if ($ch->can('lose_acks'))
{
	$node->append_conf('postgresql.conf', "walship.retry_min_delay = 1500ms\nwalship.retry_max_delay = 3s\n");
	$node->restart;
	psql(q{CREATE TABLE gate (id int PRIMARY KEY, legacy int, v int);
	       ALTER PUBLICATION shop ADD TABLE gate;
	       INSERT INTO gate VALUES (0, 0, 0)});
	ok(wait_worker_caught_up($node, psql('SELECT pg_current_wal_lsn()')), 'gate: created and filled');
	my $lost = sub {
		scalar grep { $_->{query} =~ /^INSERT INTO `shop`.`gate`/ && !$_->{acknowledged} } @{ $ch->inserts };
	};
	$ch->lose_acks(1);
	psql(q{INSERT INTO gate VALUES (1, 1, 1)});
	ok(poll_value($lost, sub { $_[0] == 1 }), 'gate: an acknowledgement lost');
	psql(q{INSERT INTO gate VALUES (2, 2, 2)});
	ok(wait_worker_caught_up($node, psql('SELECT pg_current_wal_lsn()')), 'gate: both encoders wrote the old shape');
	$ch->lose_acks(1);
	psql(q{INSERT INTO gate VALUES (3, 3, 3)});
	ok(poll_value($lost, sub { $_[0] == 2 }), 'gate: another acknowledgement lost');
	psql(q{ALTER TABLE gate DROP COLUMN legacy; INSERT INTO gate VALUES (4, 4)});
	ok(wait_worker_caught_up($node, psql('SELECT pg_current_wal_lsn()')),
		'gate: caught up after the DROP COLUMN')
	  or diag(psql('SELECT * FROM walship.status'));
	is(psql(q{SELECT rejected_batches || ' ' || coalesce(last_error, '') FROM walship.status}),
		'0 ', 'gate: the retried old-shape rows were not refused');
	is($ch->query(q{SELECT id, v FROM shop.gate FINAL WHERE NOT _deleted ORDER BY id FORMAT TSV}),
		join('', map { "$_\t$_\n" } 0 .. 4), 'gate: every row in ClickHouse');
}

# Many relation shapes: a new column added and dropped again, 200 times,
# with a row each time.  The worker processes free the shapes no request
# and no table uses any more: together they keep far fewer than the 200
# they saw, and none in the cache's parent context itself.
if ($dialect eq 'clickhouse_18')
{
	psql(q{CREATE TABLE churn (id int PRIMARY KEY, v int);
	       ALTER PUBLICATION shop ADD TABLE churn;
	       INSERT INTO churn VALUES (0, 0)});
	foreach my $i (1 .. 200)
	{
		psql(qq{ALTER TABLE churn ADD COLUMN c$i int;
		        INSERT INTO churn VALUES ($i, $i);
		        ALTER TABLE churn DROP COLUMN c$i;
		        UPDATE churn SET v = v + 1 WHERE id = $i});
	}
	ok(wait_worker_caught_up($node, psql('SELECT pg_current_wal_lsn()')), 'churn: caught up')
	  or diag(psql('SELECT * FROM walship.status'));
	is($ch->query(q{SELECT count(), sum(v) FROM shop.churn FINAL WHERE NOT _deleted FORMAT TSV}),
		"201\t20300\n", 'churn: every row in ClickHouse');

	my $offset = -s $node->logfile;
	my @pids = split /\n/, psql(q{SELECT pid FROM pg_stat_activity
	  WHERE backend_type IN ('walship worker', 'walship encoder') ORDER BY pid});
	psql("SELECT pg_log_backend_memory_contexts($_)") foreach @pids;
	my $stats;
	ok(poll_value(sub { $stats = substr(slurp_file($node->logfile), $offset) },
			sub { !grep { $stats !~ /\[$_\] [^\n]*Grand total/ } @pids }),
		'the memory contexts of ' . scalar(@pids) . ' walship processes logged');
	my $kept = () = $stats =~ /level: \d+; walship RowBinary shape: /g;
	unlike($stats, qr/walship RowBinary shape: [^\n]*\n[^\n]*level: \d+; \d+ more child contexts/,
		'(no process has so many shapes that the statistics leave some out)');
	my @parent = $stats =~ /walship RowBinary shapes: (\d+) total/g;
	# each process sweeps when it holds more than 64 (or twice what the
	# last sweep kept): bounded per process, whatever the encoder count
	my %per_pid;
	$per_pid{$1}++ while $stats =~ /\[(\d+)\] [^\n]*level: \d+; walship RowBinary shape: /g;
	my ($most) = sort { $b <=> $a } (values %per_pid, 0);
	cmp_ok($most, '<=', 130,
		"relation shapes kept by one walship process: at most $most (all: $kept, of 200+ seen)");
	ok(@parent && !grep({ $_ > 8192 } @parent),
		'... none in the cache context itself: ' . join(', ', map { "$_ bytes" } @parent))
	  or diag($stats);
	# what 400 table checks read and planned was freed after each
	my @checks = $stats =~ /walship table (?:checks|step): (\d+) total/g;
	ok(@checks && !grep({ $_ > 16384 } @checks),
		'the table checks\' memory is freed after each: ' . join(', ', map { "$_ bytes" } @checks));
}

my $log = slurp_file($node->logfile);
is(worker_sigkills($log), 2, "$dialect: the log shows the 2 SIGKILLs of the worker");
is(join("\n", worker_errors($log)), '', "$dialect: the worker logged no ERROR, FATAL or PANIC");

$node->stop;
$ch->stop;
}

scenario(WalshipClickHouse->new(dir => "$tmp/ch", no_tcp => 1), 'clickhouse_18', 'gzip');

my ($chdb_ok, $chdb_why) = WalshipChdb->available;
SKIP:
{
	skip "ClickHouse 26 (chdb) is not available: $chdb_why", 1 unless $chdb_ok;
	scenario(WalshipChdb->new(dir => "$tmp/chdb"), 'clickhouse', 'zstd');
}
done_testing();
