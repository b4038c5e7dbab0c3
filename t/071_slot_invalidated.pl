# Copyright (c) walship developers
#
# t/071_slot_invalidated.pl
#	  A slot invalidated by max_slot_wal_keep_size, against the Python sink
#	  (flat NDJSON shape):
#
#	  1. The sink answers 503 while rows are deleted, updated and inserted,
#	     then WAL is written and a CHECKPOINT removes what the slot needs:
#	     PostgreSQL invalidates the slot and ends the worker.  Under
#	     walship.on_slot_lost = resync (the default) the next worker reports
#	     the gap (log and walship.status), drops the invalidated slot,
#	     creates a new one and resyncs: the replay of what the sink
#	     acknowledged equals the table.
#	  2. walship.on_slot_lost = stop: the same loss is an error (state
#	     error, the range in last_error and the log, with detail and hint);
#	     the invalidated slot stays, no slot is created, nothing is queued.
#	  3. Back to resync by reload: the worker resyncs.
#	  4. A resync recorded as 'pending' (the worker ended after creating
#	     the new slot, before recording the resync) is taken up by the next
#	     worker.
#
#	  Checked against the code before the lost-slot work (5e99a78): no
#	  resync, and the replay differed from the table; and with the call
#	  that takes a pending resync up disabled, part 4 failed.
#
# IDENTIFICATION
#	  t/071_slot_invalidated.pl

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

my $tmp = abs_path(PostgreSQL::Test::Utils::tempdir('invalidated'));
my $sink = WalshipHttpSink->new(dir => "$tmp/sink");
$sink->set_behaviour({ default => { status => 204 } });

# 1 MB WAL segments: a few switches exceed max_slot_wal_keep_size
my $node = PostgreSQL::Test::Cluster->new('invalidated');
$node->init(allows_streaming => 'logical', extra => ['--wal-segsize=1']);
$node->append_conf('postgresql.conf', q{
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
shared_preload_libraries = 'walship'
} . plugin_libraries_conf() . qq{
max_slot_wal_keep_size = 2MB
wal_keep_size = 0
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
CREATE TABLE filler (x int);
CREATE PUBLICATION wpub FOR TABLE items;
CREATE EXTENSION walship;
});
ok(poll_until($node, q{SELECT count(*) = 1 AND bool_and(state = 'done') FROM walship.backfills}),
	'initial backfill done');
my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_worker_caught_up($node, $lsn), 'worker caught up');

# Changes the sink refuses, then enough WAL and a checkpoint to invalidate
# the slot, which holds them.  Returns the WAL position after the changes.
my $round = 0;
sub lose_slot
{
	$round++;
	$sink->set_default({ status => 503 });
	my $seq = $sink->last_seq;
	$node->safe_psql('postgres', qq{
DELETE FROM items WHERE id % 10 = $round;
UPDATE items SET val = 'gap $round' WHERE id % 10 = $round + 3;
INSERT INTO items SELECT g, $round, 'gap-insert' FROM generate_series(10000 * $round, 10000 * $round + 50) g;
});
	my $changes_lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
	$sink->wait_for(sub { grep { $_->{seq} > $seq && $_->{status} == 503 } @{ $_[0] } })
	  or die 'the sink saw no request of the gap';
	for (1 .. 6)
	{
		$node->safe_psql('postgres', 'INSERT INTO filler VALUES (1); SELECT pg_switch_wal();');
	}
	$node->safe_psql('postgres', 'CHECKPOINT');
	return $changes_lsn;
}

# ---------------------------------------------------------------------------
# 1. Invalidated under on_slot_lost = resync
# ---------------------------------------------------------------------------
my $changes_lsn = lose_slot();
ok(poll_until($node, q{SELECT wal_status = 'lost' OR resyncs > 0 FROM walship.status}),
	'the slot is invalidated');
$sink->set_default({ status => 204 });
ok(poll_until($node, q{SELECT resyncs = 1 AND resync_state = 'done' FROM walship.status}),
	'the worker resyncs after the invalidation');
$lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_worker_caught_up($node, $lsn), 'worker caught up');
is(replay_differs($node, $sink, $tmp, 'items', 'id', 'id, grp, val'), '0',
	'the replay of what the sink acknowledged equals the table');
my ($gap_start, $gap_end) = split /\|/, walship_status($node, 'gap_start_lsn, gap_end_lsn');
cmp_ok(lsn_num($gap_start), '<', lsn_num($changes_lsn), "the gap starts before the refused changes ($gap_start)");
cmp_ok(lsn_num($gap_end), '>', lsn_num($changes_lsn), "and ends after them ($gap_end)");
like(slurp_file($node->logfile),
	qr/WARNING:  walship replication slot "walship" was lost \(invalidated\): changes from \Q$gap_start\E to \Q$gap_end\E were not shipped/,
	'the log reports the exact range');
like($node->safe_psql('postgres', q{SELECT count(*) || ' ' || coalesce(string_agg(wal_status, ','), '') FROM pg_replication_slots}),
	qr{^1 (reserved|extended)$}, 'the invalidated slot was replaced');

# ---------------------------------------------------------------------------
# 2. on_slot_lost = stop
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', q{ALTER SYSTEM SET walship.on_slot_lost = 'stop'; SELECT pg_reload_conf();});
my $backfills = $node->safe_psql('postgres', 'SELECT count(*) FROM walship.backfills');
my $log_offset = -s $node->logfile;
$changes_lsn = lose_slot();
ok(poll_until($node, q{SELECT state = 'error' AND resync_state = 'stopped' FROM walship.status}),
	'under on_slot_lost = stop the lost slot is an error');
my ($error, $stop_start) = split /\|/, walship_status($node, 'last_error, gap_start_lsn');
like($error, qr/^replication slot "walship" is invalidated: changes from \Q$stop_start\E on were not shipped$/,
	"last_error: $error");
cmp_ok(lsn_num($stop_start), '<', lsn_num($changes_lsn), 'the range starts before the refused changes');
my $log = substr(slurp_file($node->logfile), $log_offset);
like($log, qr/WARNING:  walship: replication slot "walship" is invalidated: changes from \Q$stop_start\E on were not shipped\n.*DETAIL:  walship.progress says the endpoint acknowledged the changes before \Q$stop_start\E, and no slot keeps the WAL after it: changes committed from \Q$stop_start\E to the current position [0-9A-F]+\/[0-9A-F]+, deletes included, may be missing at the endpoint\. walship.on_slot_lost = stop: nothing is created or shipped\.\n.*HINT:  Set walship.on_slot_lost = resync/s,
	'the log has the range, a detail and a hint');
is($node->safe_psql('postgres', q{SELECT count(*) || ' ' || string_agg(wal_status, ',') FROM pg_replication_slots}),
	'1 lost', 'nothing was created: the invalidated slot is still there');
is($node->safe_psql('postgres', 'SELECT count(*) FROM walship.backfills'), $backfills,
	'nothing was queued');
is(walship_status($node, 'resyncs'), '1', 'no resync');

# ---------------------------------------------------------------------------
# 3. Back to resync
# ---------------------------------------------------------------------------
$sink->set_default({ status => 204 });
$node->safe_psql('postgres', q{ALTER SYSTEM SET walship.on_slot_lost = 'resync'; SELECT pg_reload_conf();});
ok(poll_until($node, q{SELECT resyncs = 2 AND resync_state = 'done' FROM walship.status}),
	'after a reload with on_slot_lost = resync the worker resyncs');
$lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_worker_caught_up($node, $lsn), 'worker caught up');
is(replay_differs($node, $sink, $tmp, 'items', 'id', 'id, grp, val'), '0',
	'the replay of what the sink acknowledged equals the table');
is(walship_status($node, 'gap_start_lsn'), $stop_start, 'the gap starts where the error said');

# ---------------------------------------------------------------------------
# 4. A worker that ended between creating the new slot and recording the
#    resync (walship.progress says 'pending', the slot exists): the next
#    worker starts the resync, from the recorded start of the gap.
# ---------------------------------------------------------------------------
my $pending_start = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
$node->safe_psql('postgres', qq{
UPDATE walship.progress SET resync_state = 'pending', gap_start_lsn = '$pending_start', gap_end_lsn = NULL});
my $victim = walship_status($node, 'worker_pid');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($victim)");
ok(poll_until($node, q{SELECT resyncs = 3 AND resync_state = 'done' FROM walship.status}),
	'the next worker takes the pending resync up');
is(walship_status($node, 'gap_start_lsn'), $pending_start, 'from the recorded start of the gap');
like(slurp_file($node->logfile),
	qr/WARNING:  walship replication slot "walship" was lost \(found again after a restart\): changes from \Q$pending_start\E to /,
	'and says so');
$lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_worker_caught_up($node, $lsn), 'worker caught up');
is(replay_differs($node, $sink, $tmp, 'items', 'id', 'id, grp, val'), '0',
	'the replay of what the sink acknowledged equals the table');

done_testing();
