# Copyright (c) walship developers
#
# t/075_failover_slots.pl
#	  Failover slots (issue 10, PostgreSQL 17 and later): the worker creates
#	  its slot with failover = true; a physical standby with
#	  sync_replication_slots = on keeps a synchronized copy of it; the
#	  primary lists the standby's slot in synchronized_standby_slots, so the
#	  worker ships nothing the standby has not confirmed.  The primary dies
#	  (immediate shutdown) in the middle of a workload, the standby is
#	  promoted, and its worker continues from the synchronized slot: no new
#	  slot, no gap report, no resync, and deduplicating the acknowledged
#	  changes by change id gives exactly the changes the new primary has
#	  (the source of truth: a second failover slot "ref", synchronized too
#	  and never consumed, peeked on the promoted standby at the end).
#
#	  A slot made without failover (by an older walship) is made a failover
#	  slot when the worker starts.
#
#	  On PostgreSQL 15 and 16 there are no failover slots: the test skips.
#
#	  Run it against 17 and 18 in the Debian chroots of test/other-majors.sh:
#	    bash test/other-majors.sh trixie 17 t/075_failover_slots.pl
#	    bash test/other-majors.sh sid 18 t/075_failover_slots.pl
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);
use WalshipHttpSink;
use WalshipTest;

my $primary = worker_node('primary');
if ($primary->pg_version < 17)
{
	plan skip_all => 'failover slots need PostgreSQL 17 or later (this is '
	  . $primary->pg_version
	  . '); on 15 and 16 a failover loses the slot and walship resyncs';
}

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $sink = WalshipHttpSink->new(dir => "$tmp/sink");

$primary->append_conf('postgresql.conf', q{
walship.format = 'ndjson'
walship.batch_max_delay = '20ms'
walship.retry_min_delay = '50ms'
walship.retry_max_delay = '200ms'
} . "walship.endpoint = '" . $sink->url('/ingest') . "'\n");
$primary->start;
$primary->safe_psql('postgres', q{
CREATE EXTENSION walship;
CREATE TABLE w (id int PRIMARY KEY, v int NOT NULL);
CREATE PUBLICATION walship FOR TABLE w;
SELECT pg_create_physical_replication_slot('sb1', true);
});
ok(wait_streaming($primary), 'the primary\'s worker streams');
is($primary->safe_psql('postgres',
		q{SELECT failover FROM pg_replication_slots WHERE slot_name = 'walship'}),
	't', 'the worker created its slot with failover = true');
# The standby: slot synchronization needs hot_standby_feedback, a physical
# slot on the primary and a database in primary_conninfo.
$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->append_conf('postgresql.conf', q{
sync_replication_slots = on
hot_standby_feedback = on
primary_slot_name = 'sb1'
} . "primary_conninfo = '" . $primary->connstr . " dbname=postgres'\n");
$standby->start;
# Only now: the standby is built from a backup taken before, so it has no
# synchronized_standby_slots of its own once promoted.
$primary->append_conf('postgresql.conf', "synchronized_standby_slots = 'sb1'\n");
$primary->reload;

is($standby->safe_psql('postgres', 'SELECT state FROM walship.status'), 'standby',
	'the standby\'s worker waits for promotion');

# The source of truth, synchronized to the standby as well: created once the
# standby streams, so that the standby has the WAL from its start on (a
# synchronized copy is only kept once the standby has the slot's WAL).
$primary->wait_for_replay_catchup($standby);
$primary->safe_psql('postgres',
	q{SELECT pg_create_logical_replication_slot('ref', 'walship', false, false, true)});

# A workload of inserts and updates on the primary.
my $script = "$tmp/w.sql";
PostgreSQL::Test::Utils::append_to_file($script, q{
\set id random(1, 20000)
INSERT INTO w VALUES (:id, 1) ON CONFLICT (id) DO UPDATE SET v = w.v + 1;
});
my $workload = start_workload($primary, $tmp, '-c', '2', '-T', '60', '-R', '300', '-f', $script);

ok($standby->poll_query_until('postgres', q{
SELECT count(*) = 2 FROM pg_replication_slots
 WHERE slot_name IN ('walship', 'ref') AND synced AND failover AND NOT temporary}),
	'the standby has synchronized copies of both slots');

# Let shipping and synchronization go on for a while (1,000 changes), so
# that the synced slot is well past where it started.
ok($primary->poll_query_until('postgres', q{SELECT count(*) >= 1000 FROM w}),
	'the workload runs');
my $mark = $primary->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok(wait_slot_confirmed($primary, $mark), "the primary's worker confirmed past $mark");
ok($standby->poll_query_until('postgres', qq{
SELECT confirmed_flush_lsn >= '$mark' FROM pg_replication_slots WHERE slot_name = 'walship'}),
	"the synchronized slot follows (past $mark)");
my $acked_before = grep { is_2xx($_) } $sink->requests;
ok($acked_before > 0, "$acked_before batches acknowledged before the failover");

# The standby goes down; the workload goes on.  With the standby's slot in
# synchronized_standby_slots, the worker must ship nothing the standby does
# not have: the WAL written meanwhile is lost in the failover.
$standby->stop;
my $standby_has = $primary->safe_psql('postgres',
	q{SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'sb1'});
ok($primary->poll_query_until('postgres',
		qq{SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$standby_has') > 300000}),
	"the primary writes on past what the standby has ($standby_has)");
ok($primary->poll_query_until('postgres', q{SELECT lag_bytes > 300000 FROM walship.status}),
	'walship.status: the lag grows');
is($primary->safe_psql('postgres', qq{
SELECT confirmed_flush_lsn <= '$standby_has' AND
       (SELECT decoded_lsn <= '$standby_has' FROM walship.status)
  FROM pg_replication_slots WHERE slot_name = 'walship'}), 't',
	'the worker decoded and confirmed nothing past what the standby has');

# The primary dies mid-workload; the standby comes back and is promoted.
$primary->stop('immediate');
stop_workload($workload);
$standby->start;
my $synced_at = $standby->safe_psql('postgres',
	q{SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'walship'});
my $log_offset = -s $standby->logfile;
$standby->promote;
ok($standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'promoted');
ok(wait_streaming($standby), 'the promoted standby\'s worker streams');

# More changes on the new primary.
$standby->safe_psql('postgres', q{
INSERT INTO w SELECT g, 1 FROM generate_series(30001, 30100) g;
UPDATE w SET v = v + 100 WHERE id BETWEEN 30001 AND 30050;
});
my $end = $standby->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok(wait_worker_caught_up($standby, $end), 'the new primary\'s changes are shipped');

my $log = slurp_file($standby->logfile, $log_offset);
like($log, qr/walship started shipping slot "walship" from \Q$synced_at\E/,
	"the worker continues from the synchronized slot ($synced_at)");
unlike($log, qr/walship created logical replication slot/, 'no new slot');
unlike($log, qr/not shipped|resync/i, 'no gap reported, no resync');

# ---------------------------------------------------------------------------
# Deduplicated by change id, the acknowledged changes are exactly the new
# primary's changes
# ---------------------------------------------------------------------------
sleep 0.5;	# answers to requests of the dead primary's worker may be due
my $ref_count = check_acked_against_reference($standby, $sink, $tmp,
	publication => 'walship', what => 'change of the new primary');
cmp_ok($ref_count, '>', 200, "the new primary has $ref_count changes");
is($standby->safe_psql('postgres', q{SELECT count(*) FROM acked WHERE line->>'op' = 'r'}), '0',
	'no backfilled rows: nothing was resynced');
is(replayed_table_diff($standby, 'w', qw(id v)), '0',
	'replaying the deduplicated changes gives the new primary\'s table');

$standby->stop;

# ---------------------------------------------------------------------------
# A slot made without failover (by an older walship, or by hand) is made a
# failover slot when the worker starts
# ---------------------------------------------------------------------------
my $old = worker_node('old_slot',
	"walship.endpoint = '" . $sink->url('/ingest') . "'\n");
$old->start;
$old->safe_psql('postgres',
	q{SELECT pg_create_logical_replication_slot('walship', 'walship')});
is($old->safe_psql('postgres',
		q{SELECT failover FROM pg_replication_slots WHERE slot_name = 'walship'}),
	'f', 'a slot without failover');
$log_offset = -s $old->logfile;
$old->safe_psql('postgres', q{
CREATE EXTENSION walship;
CREATE TABLE w (id int PRIMARY KEY);
CREATE PUBLICATION walship FOR TABLE w;
});
ok(wait_streaming($old), 'the worker streams from it');
is($old->safe_psql('postgres',
		q{SELECT failover FROM pg_replication_slots WHERE slot_name = 'walship'}),
	't', 'the worker made it a failover slot');
like(slurp_file($old->logfile, $log_offset),
	qr/LOG:  walship made replication slot "walship" a failover slot/,
	'and said so in the log');
unlike(slurp_file($old->logfile, $log_offset), qr/walship created logical replication slot/,
	'the slot was kept, not recreated');
$old->stop;

$sink->stop;
done_testing();
