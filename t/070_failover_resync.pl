# Copyright (c) walship developers
#
# t/070_failover_resync.pl
#	  walship through a failover on PostgreSQL 15/16, whose slots are not
#	  kept on standbys, against the Python sink (flat NDJSON shape):
#
#	  1. A primary with walship and a streaming standby.  walship.initial_
#	     backfill is on by default: the rows the tables held before the
#	     worker created its slot arrive.  The worker on the standby waits
#	     (state standby) and creates no slot.
#	  2. The sink stops acknowledging (503) while rows are deleted, updated
#	     and inserted: walship.progress (replicated) knows the last
#	     acknowledged position, the slot holds the rest.  The primary stops
#	     (immediate mode) and the standby is promoted: the slot is gone.
#	  3. The worker on the new primary reports the gap (the exact LSN range,
#	     in the log and walship.status), creates a slot, backfills every
#	     published table while a workload runs, and ships a resync line per
#	     table after its rows.  Replaying everything the sink acknowledged
#	     (newest _version per key, deletes removed, rows of a table below
#	     its resync version removed) gives exactly the new primary's
#	     tables, the rows deleted during the gap included.
#
#	  Checked against the code before the lost-slot work (5e99a78): the
#	  worker never ran on the standby, created a new slot silently after the
#	  promotion, and the replay differed from the new primary by 242 rows of
#	  items and the deleted rows of small (the gap's deletes and updates).
#
# IDENTIFICATION
#	  t/070_failover_resync.pl

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use Cwd qw(abs_path);
use WalshipHttpSink;
use WalshipResync;
use WalshipTest;

my $tmp = abs_path(PostgreSQL::Test::Utils::tempdir('failover'));
my $sink = WalshipHttpSink->new(dir => "$tmp/sink");
$sink->set_behaviour({ default => { status => 204 } });

my $primary = worker_node('primary', qq{
max_connections = 30
hot_standby = on
walship.database = 'postgres'
walship.publication = 'wpub'
walship.endpoint = '${\ $sink->url('/ingest/{schema}/{table}') }'
walship.format = 'ndjson'
walship.ndjson_shape = 'flat'
walship.batch_max_delay = 20ms
walship.retry_min_delay = 20ms
walship.retry_max_delay = 200ms
});
$primary->start;

# rows that exist before the extension, and so before the slot
$primary->safe_psql('postgres', q{
CREATE TABLE items (id int PRIMARY KEY, grp int NOT NULL, val text);
INSERT INTO items SELECT g, g % 13, md5(g::text) FROM generate_series(1, 5000) g;
CREATE TABLE small (k text PRIMARY KEY, n int);
INSERT INTO small SELECT 'k' || g, g FROM generate_series(1, 50) g;
CREATE PUBLICATION wpub FOR TABLE items, small;
CREATE EXTENSION walship;
});

# ---------------------------------------------------------------------------
# 1. Initial backfill by default; a standby whose worker waits
# ---------------------------------------------------------------------------
ok(poll_until($primary, q{
SELECT count(*) = 2 AND bool_and(state = 'done') FROM walship.backfills}),
	'walship.initial_backfill is on by default: both tables are backfilled');
my $lsn = $primary->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_worker_caught_up($primary, $lsn), 'worker caught up');
is(replay_differs($primary, $sink, $tmp, 'items', 'id', 'id, grp, val'), '0',
	'the rows items held before the slot existed arrived');

$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;
ok(poll_until($standby, q{SELECT state = 'standby' AND worker_pid IS NOT NULL FROM walship.status}),
	'the worker on the standby waits in state standby');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM pg_replication_slots'), '0',
	'the worker on the standby created no slot');

# live changes, acknowledged
my $before_last = $primary->safe_psql('postgres', q{
UPDATE items SET val = 'live' WHERE id BETWEEN 4001 AND 4100;
DELETE FROM items WHERE id BETWEEN 4901 AND 4950;
SELECT pg_current_wal_insert_lsn();
});
$primary->safe_psql('postgres', q{INSERT INTO small VALUES ('live', 1)});
$lsn = $primary->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_worker_caught_up($primary, $lsn), 'live changes acknowledged');
# the last transaction commits after $before_last: acknowledged, it is recorded
ok(poll_until($primary, qq{
SELECT confirmed_lsn > '$before_last' FROM walship.progress WHERE slot_name = 'walship'}),
	'walship.progress records the acknowledged position');

# ---------------------------------------------------------------------------
# 2. Changes the endpoint never acknowledges, then a failover
# ---------------------------------------------------------------------------
$sink->set_default({ status => 503 });
my $seq_before_gap = $sink->last_seq;
$primary->safe_psql('postgres', q{
DELETE FROM items WHERE id BETWEEN 1 AND 300;
UPDATE items SET val = 'gap', grp = 99 WHERE id BETWEEN 1001 AND 1200;
INSERT INTO items SELECT g, 7, 'gap-insert' FROM generate_series(6001, 6100) g;
DELETE FROM small WHERE n <= 10;
UPDATE small SET n = n + 1000 WHERE n > 40;
});
my $gap_lsn = $primary->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok($sink->wait_for(sub { grep { ($_->{seq} > $seq_before_gap) && $_->{status} == 503 } @{ $_[0] } }),
	'the endpoint refuses the changes of the gap');
my $progress_lsn = $primary->safe_psql('postgres',
	q{SELECT confirmed_lsn FROM walship.progress WHERE slot_name = 'walship'});
cmp_ok(lsn_num($progress_lsn), '<', lsn_num($gap_lsn),
	"walship.progress stops at $progress_lsn, before the gap's changes");
$primary->wait_for_catchup($standby, 'replay', $gap_lsn);

$primary->stop('immediate');
$sink->set_default({ status => 204 });
$standby->promote;
my $new = $standby;

# ---------------------------------------------------------------------------
# 3. The new primary resyncs, with a workload meanwhile
# ---------------------------------------------------------------------------
# the workload keeps to rows 2001-2999 and new keys: the rows the gap
# deleted or updated can only come right through the resync
my $script = "$tmp/workload.sql";
PostgreSQL::Test::Utils::append_to_file($script, q{
\set id random(2001, 2999)
\set r random(1, 100)
UPDATE items SET val = md5(random()::text), grp = grp + 1 WHERE id = :id;
DELETE FROM items WHERE id = :id + 1 AND :r <= 20;
INSERT INTO items VALUES (7000 + :id, :r, 'after') ON CONFLICT (id) DO UPDATE SET val = 'again';
});
my $workload = start_workload($new, $tmp, '-c', 2, '-T', 3, '-f', $script);

ok(poll_until($new, q{SELECT state = 'streaming' FROM walship.status}),
	'the worker on the promoted standby ships');
ok(poll_until($new, q{
SELECT count(*) = 2 AND bool_and(state = 'done')
  FROM walship.backfills WHERE resync_version IS NOT NULL}),
	'every published table is backfilled again');
stop_workload($workload);
$lsn = $new->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_worker_caught_up($new, $lsn), 'worker on the new primary caught up');

is(replay_differs($new, $sink, $tmp, 'items', 'id', 'id, grp, val'), '0',
	'items: the replay of what the sink acknowledged equals the new primary');
is(replay_differs($new, $sink, $tmp, 'small', 'k', 'k, n'), '0',
	'small: the replay of what the sink acknowledged equals the new primary');
is($new->safe_psql('postgres', q{
SELECT count(*) FROM received_items WHERE (line->>'id')::int BETWEEN 1 AND 300 AND line->>'_op' = 'd'}),
	'0', 'the deletes of the gap were never shipped: the resync line removes those rows');

# the gap, reported
my ($gap_start, $gap_end, $resyncs, $state) = split /\|/, walship_status($new,
	'gap_start_lsn, gap_end_lsn, resyncs, resync_state');
ok(poll_until($new, q{SELECT resync_state = 'done' FROM walship.status}),
	'walship.status: resync_state done');
is($resyncs, '1', 'walship.status: one resync');
is($gap_start, $progress_lsn, 'the gap starts where walship.progress stopped');
cmp_ok(lsn_num($gap_end), '>', lsn_num($gap_lsn), 'the gap ends after the changes of the gap');
ok(defined walship_status($new, 'gap_detected_at') && walship_status($new, 'gap_detected_at') ne '',
	'walship.status: gap_detected_at');
my $log = slurp_file($new->logfile);
like($log, qr/WARNING:  walship replication slot "walship" was lost \(missing\): changes from \Q$gap_start\E to \Q$gap_end\E were not shipped/,
	'the log reports the exact range lost');
like($log, qr/DETAIL:  walship.progress says the endpoint acknowledged the changes before \Q$gap_start\E; the new slot starts at \Q$gap_end\E/,
	'with a detail');
is($new->safe_psql('postgres', q{
SELECT gap_start_lsn || ' ' || gap_end_lsn || ' ' || resyncs || ' ' || resync_state || ' ' || (resync_version = gap_end_lsn)
  FROM walship.progress WHERE slot_name = 'walship'}),
	"$gap_start $gap_end 1 done true", 'walship.progress keeps the gap and the resync');

# the resync lines: one per table, at the resync's version, after the rows
my $version = lsn_num($gap_end);
for my $table (qw(items small))
{
	my @lines = received_lines($sink, qr{/ingest/public/\Q$table\E$});
	my @resync = grep { $_->{_op} eq 'resync' } @lines;
	ok(@resync >= 1 && (grep { $_->{_version} == $version && $_->{_table} eq $table && $_->{_schema} eq 'public' } @resync) == @resync,
		"$table: resync line with _version $version");
	my ($last_read) = grep { $lines[$_]{_op} eq 'r' && $lines[$_]{_version} >= $version } reverse 0 .. $#lines;
	my ($first_resync) = grep { $lines[$_]{_op} eq 'resync' } 0 .. $#lines;
	ok(defined $last_read && $first_resync > $last_read,
		"$table: the resync line comes after the table's backfilled rows");
}

done_testing();
