# Copyright (c) walship developers
#
# t/076_resync_edge_cases.pl
#	  Resyncs after a dropped (missing) slot, against the recording Python
#	  sink (flat NDJSON shape), in the cases t/070 and t/071 leave out:
#
#	  1. A published table no backfill can read (no primary key, REPLICA
#	     IDENTITY FULL): the resync skips it with a WARNING, walship.backfills
#	     lists it as a failed backfill of the resync, it gets no resync
#	     line, and the resync ends 'incomplete' (status, catalog, log); the
#	     keyed table is resynced fully.  Before the fix the resync said
#	     'done'.
#	  2. walship.on_slot_lost = stop with a missing slot (t/071 tests the
#	     invalidated one): state error, the range in last_error and in the
#	     log with detail and hint, no slot created, nothing queued; a reload
#	     with resync recovers.
#	  3. The resync's backfill cancelled (walship.cancel_backfill()) between
#	     two rate-limited chunks: the resync says 'incomplete' within
#	     seconds, no resync line is sent.  Before the fix it said 'running'
#	     until something else wrote walship.progress (here: never).
#
#	  Checked against the code before the fixes (8efa86c): parts 1 and 3
#	  failed (9 of 38 assertions: the states, the failed backfill row, the
#	  log lines); part 2 passed (it covers code that was right).
#
# IDENTIFICATION
#	  t/076_resync_edge_cases.pl

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

my $tmp = abs_path(PostgreSQL::Test::Utils::tempdir('resync_edges'));
my $sink = WalshipHttpSink->new(dir => "$tmp/sink");
$sink->set_behaviour({ default => { status => 204 } });

my $node = worker_node('resync_edges', qq{
walship.database = 'postgres'
walship.publication = 'wpub'
walship.endpoint = '${\ $sink->url('/ingest/{schema}/{table}') }'
walship.format = 'ndjson'
walship.ndjson_shape = 'flat'
walship.batch_max_delay = 20ms
walship.retry_min_delay = 20ms
walship.retry_max_delay = 200ms
});
$node->start;
$node->safe_psql('postgres', q{
CREATE TABLE items (id int PRIMARY KEY, grp int NOT NULL, val text);
INSERT INTO items SELECT g, g % 13, md5(g::text) FROM generate_series(1, 2000) g;
CREATE TABLE nokey (v int, t text);
ALTER TABLE nokey REPLICA IDENTITY FULL;
INSERT INTO nokey SELECT g, 'n' || g FROM generate_series(1, 50) g;
CREATE PUBLICATION wpub FOR TABLE items, nokey;
CREATE EXTENSION walship;
});
ok(poll_until($node, q{SELECT count(*) = 1 AND bool_and(state = 'done') FROM walship.backfills}),
	'initial backfill of the keyed table done');
my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_worker_caught_up($node, $lsn), 'worker caught up');

# Ends the worker, drops its slot while walship.progress keeps its row, and
# changes rows meanwhile (the gap).  The next worker finds the slot missing.
sub drop_slot
{
	my ($round) = @_;
	my $pid = walship_status($node, 'worker_pid');
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
	poll_until($node, q{SELECT NOT active FROM pg_replication_slots WHERE slot_name = 'walship'})
	  or die 'the worker kept its slot';
	$node->safe_psql('postgres', qq{
SELECT pg_drop_replication_slot('walship');
DELETE FROM items WHERE id % 10 = $round;
UPDATE items SET val = 'gap $round' WHERE id % 10 = $round + 3;
});
	return;
}

# The resync lines the sink acknowledged for table $table.
sub resync_lines
{
	my ($table) = @_;
	return grep { ($_->{_op} // '') eq 'resync' }
	  received_lines($sink, qr{^/ingest/public/\Q$table\E$});
}

# ---------------------------------------------------------------------------
# 1. A published table without a key usable by a backfill
# ---------------------------------------------------------------------------
my $log_offset = -s $node->logfile;
drop_slot(1);
ok(poll_until($node, q{SELECT resyncs = 1 AND resync_state IN ('done', 'incomplete') FROM walship.status}),
	'the worker resyncs after the slot was dropped');
is(walship_status($node, 'resync_state'), 'incomplete',
	'walship.status: the resync is incomplete');
is($node->safe_psql('postgres', 'SELECT resync_state FROM walship.progress'), 'incomplete',
	'walship.progress: the resync is incomplete');
my ($gap_start, $gap_end) = split /\|/, walship_status($node, 'gap_start_lsn, gap_end_lsn');
is($node->safe_psql('postgres', q{
SELECT string_agg(table_name || ':' || state, ',' ORDER BY table_name) FROM walship.backfills
 WHERE resync_version = (SELECT resync_version FROM walship.progress)}),
	'items:done,nokey:failed',
	'walship.backfills: the keyed table\'s backfill done, the other failed');
like($node->safe_psql('postgres', q{SELECT error FROM walship.backfills WHERE table_name = 'nokey'}),
	qr/no RESYNC record/, 'its error says it got no resync record');
my $log = slurp_file($node->logfile, $log_offset);
like($log,
	qr/WARNING:  walship replication slot "walship" was lost \(missing\): changes from \Q$gap_start\E to \Q$gap_end\E were not shipped/,
	'the log reports the gap');
like($log, qr/WARNING:  walship does not backfill table (?:public\.)?nokey: /,
	'the log names the table it cannot backfill');
like($log, qr/LOG:  walship resync incomplete\n.*DETAIL:  The backfill of at least one table failed or was cancelled/,
	'the log says the resync is incomplete');
unlike($log, qr/walship resync done/, 'and not that it is done');
is(scalar(resync_lines('items')), 1, 'the keyed table got its resync line');
is(scalar(resync_lines('nokey')), 0, 'the table without a key got none');
$lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_worker_caught_up($node, $lsn), 'worker caught up');
is(replay_differs($node, $sink, $tmp, 'items', 'id', 'id, grp, val'), '0',
	'the keyed table was resynced fully: the replay equals the table');

$node->safe_psql('postgres', 'ALTER PUBLICATION wpub DROP TABLE nokey');

# ---------------------------------------------------------------------------
# 2. on_slot_lost = stop with a missing slot, then resync by reload
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', q{ALTER SYSTEM SET walship.on_slot_lost = 'stop'; SELECT pg_reload_conf();});
ok(poll_until($node, q{SELECT current_setting('walship.on_slot_lost') = 'stop'}), 'on_slot_lost = stop');
my $backfills = $node->safe_psql('postgres', 'SELECT count(*) FROM walship.backfills');
my $acked_before = $node->safe_psql('postgres', 'SELECT confirmed_lsn FROM walship.progress');
$log_offset = -s $node->logfile;
drop_slot(2);
ok(poll_until($node, q{SELECT state = 'error' AND resync_state = 'stopped' FROM walship.status}),
	'under on_slot_lost = stop the missing slot is an error');
my ($error, $stop_start) = split /\|/, walship_status($node, 'last_error, gap_start_lsn');
like($error, qr/^replication slot "walship" is missing: changes from \Q$stop_start\E on were not shipped$/,
	"last_error: $error");
cmp_ok(lsn_num($stop_start), '>=', lsn_num($acked_before),
	'the range starts where walship.progress says the endpoint acknowledged');
$log = slurp_file($node->logfile, $log_offset);
like($log, qr/WARNING:  walship: replication slot "walship" is missing: changes from \Q$stop_start\E on were not shipped\n.*DETAIL:  walship.progress says the endpoint acknowledged the changes before \Q$stop_start\E, and no slot keeps the WAL after it: changes committed from \Q$stop_start\E to the current position [0-9A-F]+\/[0-9A-F]+, deletes included, may be missing at the endpoint\. walship.on_slot_lost = stop: nothing is created or shipped\.\n.*HINT:  Set walship.on_slot_lost = resync/s,
	'the log has the range, a detail and a hint');
unlike($log, qr/walship created logical replication slot/, 'the log shows no slot created');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_replication_slots'), '0',
	'no slot was created');
is($node->safe_psql('postgres', 'SELECT count(*) FROM walship.backfills'), $backfills,
	'nothing was queued');
is(walship_status($node, 'resyncs'), '1', 'no resync');

$node->safe_psql('postgres', q{ALTER SYSTEM SET walship.on_slot_lost = 'resync'; SELECT pg_reload_conf();});
ok(poll_until($node, q{SELECT resyncs = 2 AND resync_state = 'done' AND state = 'streaming' FROM walship.status}),
	'after a reload with on_slot_lost = resync the worker resyncs');
is(walship_status($node, 'gap_start_lsn'), $stop_start, 'the gap starts where the error said');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pg_replication_slots'), '1',
	'a new slot');
$lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_worker_caught_up($node, $lsn), 'worker caught up');
is(replay_differs($node, $sink, $tmp, 'items', 'id', 'id, grp, val'), '0',
	'the replay of what the sink acknowledged equals the table');

# ---------------------------------------------------------------------------
# 3. The resync's backfill cancelled between two chunks
# ---------------------------------------------------------------------------
# 30,000 rows: three chunks of 10,000 (the resync's chunk size), at most 200
# rows a second: 50 seconds between two chunks.
$node->safe_psql('postgres', q{
INSERT INTO items SELECT g, g % 13, md5(g::text) FROM generate_series(2001, 30000) g;
ALTER SYSTEM SET walship.backfill_max_rate = 200;
SELECT pg_reload_conf();
});
$lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_worker_caught_up($node, $lsn), 'worker caught up');
my $resync_lines_before = scalar(resync_lines('items'));
drop_slot(3);
ok(poll_until($node, q{
SELECT p.resyncs = 3 AND b.state = 'running' AND b.chunks_done = 1
  FROM walship.status p, walship.backfills b
 WHERE b.resync_version = (SELECT resync_version FROM walship.progress)}),
	'the resync\'s backfill waits after its first chunk');
is(walship_status($node, 'resync_state'), 'running', 'the resync runs');
my $job = $node->safe_psql('postgres',
	q{SELECT id FROM walship.backfills WHERE state = 'running'});
$log_offset = -s $node->logfile;
is($node->safe_psql('postgres', "SELECT walship.cancel_backfill($job)"), 't',
	"backfill $job cancelled");
ok(poll_until($node, q{SELECT resync_state = 'incomplete' FROM walship.status}, 20),
	'walship.status says the resync is incomplete within seconds');
is($node->safe_psql('postgres', 'SELECT resync_state FROM walship.progress'), 'incomplete',
	'so does walship.progress');
like(slurp_file($node->logfile, $log_offset), qr/LOG:  walship resync incomplete/,
	'and the log');
is(scalar(resync_lines('items')), $resync_lines_before,
	'the cancelled backfill sent no resync line');
is($node->safe_psql('postgres', "SELECT state FROM walship.backfills WHERE id = $job"),
	'cancelled', 'the backfill stays cancelled');

done_testing();
