# Copyright (c) walship developers
#
# t/073_clickhouse_failover.pl
#	  The failover of t/070_failover_resync.pl against a real ClickHouse
#	  (Debian's clickhouse-server 18.16, t/WalshipClickHouse.pm): flat
#	  shape, clickhouse dialect, gzip, tables made by
#	  walship.clickhouse_ddl(), walship.clickhouse_database set.
#
#	  ClickHouse is stopped while rows are deleted, updated and inserted on
#	  the primary (the worker retries; walship.progress keeps the last
#	  acknowledged position); the primary stops in immediate mode, the
#	  standby is promoted (PostgreSQL 15: no slot there), ClickHouse comes
#	  back.  The worker on the new primary resyncs: it backfills both
#	  tables while a workload runs, then runs ALTER TABLE shop.T DELETE
#	  WHERE _version < V on ClickHouse for each.  Once the mutations are
#	  done, `FINAL WHERE NOT _deleted` equals the new primary's tables, row
#	  for row: the rows deleted during the gap are gone.  Then, without
#	  walship.clickhouse_database, a second slot loss stops at the DELETE
#	  (state error, nothing sent to ClickHouse) until it is set again.
#
#	  Checked against the code before the lost-slot work (5e99a78): FINAL
#	  differed from the new primary after the failover, for both tables.
#
#	  Skipped only when clickhouse-server is not installed (test/run-all.sh
#	  installs it).
#
#	  WALSHIP_TEST_FAILOVER_FORMAT = rowbinary runs the failover with
#	  walship.format = 'rowbinary' (t/074 does), up to the resync's DELETEs.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use Cwd qw(abs_path);
use Time::HiRes qw(time sleep);
use WalshipClickHouse;
use WalshipTest;

my $format = $ENV{WALSHIP_TEST_FAILOVER_FORMAT} // 'ndjson';

my ($available, $why) = WalshipClickHouse->available;
plan skip_all => "clickhouse-server is not installed: $why" unless $available;

my $tmp = abs_path(PostgreSQL::Test::Utils::tempdir('clickhouse_failover'));
my $ch = WalshipClickHouse->new(dir => "$tmp/ch", no_tcp => 1);
$ch->query('CREATE DATABASE shop');

my $primary = worker_node('ch_primary', qq{
max_connections = 30
hot_standby = on
walship.enabled = off
walship.database = 'postgres'
walship.publication = 'wpub'
walship.endpoint = '${\ $ch->insert_url('shop.{table}') }'
walship.clickhouse_database = 'shop'
walship.format = '$format'
walship.ndjson_shape = 'flat'
walship.dialect = 'clickhouse_18'
walship.compression = 'gzip'
walship.batch_max_delay = 20ms
walship.retry_min_delay = 20ms
walship.retry_max_delay = 300ms
});
$primary->start;
$primary->safe_psql('postgres', q{
CREATE TABLE items (id int PRIMARY KEY, grp int NOT NULL, val text);
INSERT INTO items SELECT g, g % 13, md5(g::text) FROM generate_series(1, 3000) g;
CREATE TABLE small (k text PRIMARY KEY, n int);
INSERT INTO small SELECT 'k' || g, g FROM generate_series(1, 50) g;
CREATE PUBLICATION wpub FOR TABLE items, small;
CREATE EXTENSION walship;
});
# the ClickHouse tables first, then the worker (and its initial backfill)
$ch->query($primary->safe_psql('postgres', q{SELECT walship.clickhouse_ddl('items', 'shop', 'clickhouse_18')}));
$ch->query($primary->safe_psql('postgres', q{SELECT walship.clickhouse_ddl('small', 'shop', 'clickhouse_18')}));
$primary->safe_psql('postgres', q{ALTER SYSTEM SET walship.enabled = on; SELECT pg_reload_conf();});

# PostgreSQL's rows and ClickHouse's FINAL rows of a table, as sorted lines
sub pg_rows
{
	my ($node, $sql) = @_;
	return join("\n", sort map { s/\|/\t/gr } split /\n/, $node->safe_psql('postgres', $sql));
}
sub ch_rows
{
	my ($sql) = @_;
	my $out = $ch->query("$sql FORMAT TSV");
	return join("\n", sort split /\n/, $out);
}
sub compare
{
	my ($node, $what) = @_;
	my $pg_items = pg_rows($node, q{SELECT id, grp, val FROM items});
	my $ch_items = ch_rows(q{SELECT id, grp, val FROM shop.items FINAL WHERE NOT _deleted});
	my $pg_small = pg_rows($node, q{SELECT k, n FROM small});
	my $ch_small = ch_rows(q{SELECT k, n FROM shop.small FINAL WHERE NOT _deleted});
	my $ok = is($ch_items, $pg_items, "$what: items FINAL equals PostgreSQL")
	  & is($ch_small, $pg_small, "$what: small FINAL equals PostgreSQL");
	return $ok;
}

ok(poll_until($primary, q{
SELECT count(*) = 2 AND bool_and(state = 'done') FROM walship.backfills}),
	'initial backfill of both tables');
my $lsn = $primary->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_worker_caught_up($primary, $lsn), 'worker caught up');
compare($primary, 'after the initial backfill');

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('ch_standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;
ok(poll_until($standby, q{SELECT state = 'standby' FROM walship.status}),
	'the worker on the standby waits');

# the gap: ClickHouse is down
$ch->stop;
$primary->safe_psql('postgres', q{
DELETE FROM items WHERE id BETWEEN 1 AND 250;
UPDATE items SET val = 'gap', grp = 99 WHERE id BETWEEN 1001 AND 1100;
INSERT INTO items SELECT g, 5, 'gap-insert' FROM generate_series(5001, 5050) g;
DELETE FROM small WHERE n <= 10;
UPDATE small SET n = -n WHERE n > 45;
});
my $gap_lsn = $primary->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(poll_until($primary, q{SELECT retries > 0 FROM walship.status}),
	'the worker cannot reach ClickHouse');
$primary->wait_for_catchup($standby, 'replay', $gap_lsn);
$primary->stop('immediate');
$ch->start;
$standby->promote;
my $new = $standby;

# the workload keeps to rows 2001-2999 and new keys: the rows the gap
# deleted or updated can only come right through the resync
my $script = "$tmp/workload.sql";
PostgreSQL::Test::Utils::append_to_file($script, q{
\set id random(2001, 2999)
\set r random(1, 100)
UPDATE items SET val = md5(random()::text) WHERE id = :id;
DELETE FROM items WHERE id = :id + 1 AND :r <= 20;
INSERT INTO items VALUES (6000 + :id, :r, 'after') ON CONFLICT (id) DO UPDATE SET val = 'again';
});
my $workload = start_workload($new, $tmp, '-c', 2, '-T', 3, '-f', $script);
ok(poll_until($new, q{
SELECT count(*) = 2 AND bool_and(state = 'done')
  FROM walship.backfills WHERE resync_version IS NOT NULL}),
	'the new primary backfills both tables again');
stop_workload($workload);
$lsn = $new->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_worker_caught_up($new, $lsn), 'worker on the new primary caught up');
# the backfills are done: their last batches, with the DELETEs, were
# acknowledged; ClickHouse applies them asynchronously
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
sleep 0.2 while time < $deadline
  && $ch->query_value(q{SELECT count() FROM system.mutations WHERE database = 'shop' AND NOT is_done}) ne '0';
is($ch->query_value(q{SELECT count() FROM system.mutations WHERE database = 'shop' AND NOT is_done}), '0',
	'no mutation left to apply');
compare($new, 'after the failover and the resync');
is($ch->query_value(q{SELECT count() FROM shop.items FINAL WHERE id BETWEEN 1 AND 250 AND NOT _deleted}), '0',
	'the rows deleted during the gap are gone from ClickHouse');

ok(poll_until($new, q{SELECT resync_state = 'done' FROM walship.status}),
	'resync done');
is($new->safe_psql('postgres', 'SHOW walship.format'), $format, "the worker shipped with walship.format = $format");
my $version = lsn_num(walship_status($new, 'gap_end_lsn'));
# the DELETEs, as mutations ClickHouse ran
my $mutations = $ch->query_rows(q{SELECT table, command, is_done FROM system.mutations WHERE database = 'shop'});
is(scalar(grep { $_->{command} eq "DELETE WHERE _version < $version" && $_->{is_done} } @$mutations), 2,
	"one ALTER TABLE ... DELETE WHERE _version < $version per table, done")
  or diag(explain($mutations));
is($ch->query_value("SELECT count() FROM shop.items WHERE _version < $version"), '0',
	'nothing older than the resync is left in items');

# RowBinary cannot run without walship.clickhouse_database at all (t/048)
if ($format ne 'ndjson')
{
	done_testing();
	exit 0;
}

# ---------------------------------------------------------------------------
# Without walship.clickhouse_database the DELETE cannot name its table: the
# batch waits, in state error, until it is set.
# ---------------------------------------------------------------------------
$new->safe_psql('postgres', q{ALTER SYSTEM SET walship.clickhouse_database = ''; SELECT pg_reload_conf();});
$ch->stop;
$new->safe_psql('postgres', q{DELETE FROM items WHERE id BETWEEN 2001 AND 2100});
my $pid = walship_status($new, 'worker_pid');
$new->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok(poll_until($new, q{SELECT NOT active FROM pg_replication_slots WHERE slot_name = 'walship'}),
	'the worker let go of its slot');
$new->safe_psql('postgres', q{SELECT pg_drop_replication_slot('walship')});
$ch->start;
ok(poll_until($new, q{
SELECT state = 'error' AND resyncs = 2 AND last_error LIKE '%walship.clickhouse_database is not set%'
  FROM walship.status}),
	'without walship.clickhouse_database the resync stops at its DELETE, in state error');
like(walship_status($new, 'last_error'),
	qr/^walship cannot delete the rows of table "public\.(items|small)" that the resync did not send again: walship\.clickhouse_database is not set$/,
	'last_error names the table and the setting');
is($ch->query_value(q{SELECT count() FROM system.mutations WHERE database = 'shop'}), '2',
	'no statement went to ClickHouse');
$new->safe_psql('postgres', q{ALTER SYSTEM SET walship.clickhouse_database = 'shop'; SELECT pg_reload_conf();});
ok(poll_until($new, q{SELECT resyncs = 2 AND resync_state = 'done' AND state = 'streaming' FROM walship.status}),
	'with walship.clickhouse_database set again the resync finishes');
$lsn = $new->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_worker_caught_up($new, $lsn), 'worker caught up');
$deadline = time + $PostgreSQL::Test::Utils::timeout_default;
sleep 0.2 while time < $deadline
  && $ch->query_value(q{SELECT count() FROM system.mutations WHERE database = 'shop' AND NOT is_done}) ne '0';
is($ch->query_value(q{SELECT count() FROM system.mutations WHERE database = 'shop' AND is_done}), '4',
	'two more mutations, done');
compare($new, 'after the second resync');

done_testing();
