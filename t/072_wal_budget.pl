# Copyright (c) walship developers
#
# t/072_wal_budget.pl
#	  walship.max_retained_wal (issue 10): the WAL budget of the worker's
#	  slot, with an endpoint that is stuck (it answers 503 to everything).
#
#	  1. Invalid values are refused by the check hook (0, below -1); a size
#	     is taken.
#	  2. Past 80% of the budget the worker logs a WARNING with the amount,
#	     the budget and a hint, and walship.status says wal_budget =
#	     'warning' (with retained_wal_bytes, wal_status, safe_wal_size as
#	     pg_replication_slots has them).
#	  3. Past the budget it drops its slot on purpose, with an ERROR naming
#	     the exact LSN range abandoned (from the slot's confirmed position);
#	     walship.status shows slot_given_up_at and the error; the WAL is
#	     removed at the next checkpoint.
#	  4. The worker does not recreate the slot silently: the missing slot
#	     with a walship.progress row is a gap (walship.on_slot_lost =
#	     resync, the default): reported, a new slot, a resync that sends the
#	     rows again; and shipping from the new slot, the worker warns with
#	     the whole gap, from the old confirmed position to the new slot's
#	     start.
#	  5. Inside decoding too: a large published transaction that waits for
#	     the endpoint (more pending than walship.batch_max_bytes and
#	     walship.max_inflight allow) does not keep the worker from giving the
#	     slot up; the second resync sends its rows.
#	  6. Once the endpoint accepts again, what is committed from then on is
#	     shipped.
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WalshipHttpSink;
use WalshipTest;

my $budget_mb = 4;
my $budget = $budget_mb * 1024 * 1024;

my $sink = WalshipHttpSink->new(dir => PostgreSQL::Test::Utils::tempdir());

# 1 MB WAL segments, so that giving the slot up frees whole segments
my $node = PostgreSQL::Test::Cluster->new('wal_budget');
$node->init(allows_streaming => 'logical', extra => ['--wal-segsize=1']);
$node->append_conf('postgresql.conf', q{
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
shared_preload_libraries = 'walship'
walship.format = 'ndjson'
walship.batch_max_delay = '20ms'
walship.retry_min_delay = '50ms'
walship.retry_max_delay = '200ms'
walship.batch_max_bytes = '16kB'
walship.max_inflight = 1
max_slot_wal_keep_size = '64MB'
} . plugin_libraries_conf()
	  . "walship.max_retained_wal = '${budget_mb}MB'\n"
	  . "walship.endpoint = '" . $sink->url('/ingest') . "'\n");
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION walship;
CREATE TABLE items (id int PRIMARY KEY, v text);
CREATE TABLE filler (v text);
CREATE PUBLICATION walship FOR TABLE items;
});
ok(wait_streaming($node), 'the worker streams');

# ---------------------------------------------------------------------------
# 1. The check hook
# ---------------------------------------------------------------------------
my ($rc, $out, $err) = $node->psql('postgres',
	q{ALTER SYSTEM SET walship.max_retained_wal = 0});
isnt($rc, 0, '0 is refused');
like($err, qr/invalid value for "walship\.max_retained_wal": 0/, '0: the error names the setting');
like($err, qr/DETAIL:  A budget of 0 would give up the replication slot/, '0: the detail says why');
like($err, qr/HINT:  Set it to -1 for no limit/, '0: the hint says what to set');
($rc, $out, $err) = $node->psql('postgres',
	q{ALTER SYSTEM SET walship.max_retained_wal = -2});
isnt($rc, 0, '-2 is refused');
# (17 and later also name the unit of the bounds)
like($err, qr/outside the valid range for parameter "walship\.max_retained_wal" \(-1 (MB )?\.\./,
	'-2: outside the valid range');
($rc, $out, $err) = $node->psql('postgres',
	q{ALTER SYSTEM SET walship.max_retained_wal = 'lots'});
isnt($rc, 0, 'a value that is no size is refused');
$node->safe_psql('postgres', q{ALTER SYSTEM SET walship.max_retained_wal = '10GB'});
$node->safe_psql('postgres', q{ALTER SYSTEM RESET walship.max_retained_wal});
is($node->safe_psql('postgres', 'SHOW walship.max_retained_wal'), "${budget_mb}MB",
	'the budget in force');
is(walship_status($node, 'max_retained_wal, wal_budget, slot_given_up_at IS NULL'),
	"$budget|ok|t", 'walship.status: the budget in bytes, ok, never given up');

# ---------------------------------------------------------------------------
# 2. The warning
# ---------------------------------------------------------------------------
# One change acknowledged, so that walship.progress records a position;
# then the endpoint refuses everything, and the slot stays confirmed before
# the next change.
$node->safe_psql('postgres', q{INSERT INTO items VALUES (0, 'zero')});
ok(wait_worker_caught_up($node, $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()')),
	'a first change is acknowledged');
ok(poll_until($node, q{SELECT confirmed_lsn IS NOT NULL FROM walship.progress WHERE slot_name = 'walship'}),
	'walship.progress records the acknowledged position');
$sink->set_behaviour({ default => { status => 503 } });
$node->safe_psql('postgres', q{INSERT INTO items VALUES (1, 'one')});
ok(poll_until($node, q{SELECT state = 'backoff' FROM walship.status}),
	'the endpoint refuses the batch');
my $confirmed = slot_confirmed_lsn($node);

# WAL the slot retains; undef while there is no slot
sub retained
{
	my $r = $node->safe_psql('postgres', q{
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint
  FROM pg_replication_slots WHERE slot_name = 'walship'});
	return $r eq '' ? undef : $r;
}

# WAL of a table nobody ships, 100 kB at a time, until the slot retains
# $target bytes (or is gone)
sub fill_until
{
	my ($target) = @_;
	while (1)
	{
		my $r = retained();
		last if !defined $r || $r >= $target;
		$node->safe_psql('postgres',
			q{INSERT INTO filler SELECT repeat(md5(g::text), 30) FROM generate_series(1, 100) g});
	}
	return;
}
my $log_offset = -s $node->logfile;
fill_until(int($budget * 0.85));
ok(poll_until($node, q{SELECT wal_budget = 'warning' FROM walship.status}),
	'walship.status: wal_budget = warning past 80% of the budget');
ok( $node->wait_for_log(
		qr/WARNING:  replication slot "walship" retains [\d.]+ MB of WAL, (8\d|9\d)% of walship\.max_retained_wal \(4\.0 MB\)/,
		$log_offset),
	'the worker warns with the amount and the budget');
my $log = slurp_file($node->logfile, $log_offset);
like($log, qr/DETAIL:  The slot is confirmed up to \Q$confirmed\E and keeps WAL from [0-9A-F]+\/[0-9A-F]+ on\. Past walship\.max_retained_wal walship drops the slot/,
	'the warning says where the slot stands and what comes next');
like($log, qr/HINT:  Make the endpoint accept the batches/, 'the warning has a hint');

my ($retained_s, $expected_retained, $wal_status, $slot_wal_status, $safe, $slot_safe) =
  split /\|/, $node->safe_psql('postgres', q{
SELECT s.retained_wal_bytes, pg_wal_lsn_diff(s.current_lsn, r.restart_lsn)::bigint,
       s.wal_status, r.wal_status, s.safe_wal_size, r.safe_wal_size
  FROM walship.status s, pg_replication_slots r WHERE r.slot_name = 'walship'});
cmp_ok($retained_s, '>=', $budget * 0.8, "retained_wal_bytes is past 80% of the budget ($retained_s)");
cmp_ok(abs($retained_s - $expected_retained), '<=', 65536,
	'retained_wal_bytes = current_lsn - restart_lsn');
is($wal_status, $slot_wal_status, "wal_status as pg_replication_slots says ($wal_status)");
cmp_ok(abs($safe - $slot_safe), '<=', 1_000_000, "safe_wal_size as pg_replication_slots says ($safe)");
# one warning, not one a second
sleep 3;
my @warnings = slurp_file($node->logfile, $log_offset) =~ /retains [\d.]+ MB of WAL, \d+% of/g;
is(scalar(@warnings), 1, 'the warning is not repeated every check');

# ---------------------------------------------------------------------------
# 3. Past the budget: the slot is given up, with the range abandoned
# ---------------------------------------------------------------------------
my $restart_before = $node->safe_psql('postgres',
	q{SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'walship'});
my $old_segment = $node->safe_psql('postgres', qq{SELECT pg_walfile_name('$restart_before')});
is(slot_confirmed_lsn($node), $confirmed, 'nothing was confirmed meanwhile');
$log_offset = -s $node->logfile;
fill_until($budget + 200_000);
my $over_at = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok( $node->wait_for_log(
		qr/ERROR:  walship gave up replication slot "walship" over walship\.max_retained_wal: changes committed after \Q$confirmed\E were not shipped \(WAL written up to [0-9A-F]+\/[0-9A-F]+\)/,
		$log_offset),
	"the worker gives the slot up, saying that changes after $confirmed were not shipped");
$log = slurp_file($node->logfile, $log_offset);
my ($given_up_end) = $log =~ /were not shipped \(WAL written up to ([0-9A-F]+\/[0-9A-F]+)\)/;
cmp_ok(lsn_num($given_up_end), '>=', lsn_num($over_at) - 200_000,
	"the range ends where WAL was written then ($given_up_end)");
like($log, qr/DETAIL:  The slot retained [\d.]+ MB of WAL from \Q$restart_before\E on, more than walship\.max_retained_wal \(4\.0 MB\)/,
	'the detail says how much it retained, from where, and the budget');
like($log, qr/HINT:  The worker creates a new slot when it restarts\. Resynchronize the target/,
	'the hint says what follows and what to do');
ok(poll_until($node, q{SELECT slot_given_up_at IS NOT NULL FROM walship.status}),
	'walship.status: slot_given_up_at is set');
# the endpoint is fine again: the resync can recover what was not shipped
$sink->set_behaviour({ default => { status => 204 } });

# the WAL it held goes at the next checkpoint
$node->safe_psql('postgres', 'SELECT pg_switch_wal()');
ok(poll_until($node, qq{
SELECT NOT EXISTS (SELECT FROM pg_replication_slots
                    WHERE slot_name = 'walship' AND restart_lsn <= '$restart_before')}),
	'no slot holds the old WAL any more');
$node->safe_psql('postgres', 'CHECKPOINT');
is($node->safe_psql('postgres', qq{SELECT count(*) FROM pg_ls_waldir() WHERE name = '$old_segment'}),
	'0', "the segment the slot held ($old_segment) is removed at the checkpoint");

# ---------------------------------------------------------------------------
# 4. Not recreated silently: the gap is reported and resynced
# ---------------------------------------------------------------------------
ok( $node->wait_for_log(
		qr/WARNING:  walship replication slot "walship" was lost \(missing\): changes from [0-9A-F]+\/[0-9A-F]+ to [0-9A-F]+\/[0-9A-F]+ were not shipped/,
		$log_offset),
	'the missing slot is a gap (walship.progress has a row)');
ok( $node->wait_for_log(
		qr/WARNING:  walship ships from a new replication slot "walship" from [0-9A-F]+\/[0-9A-F]+ on: changes committed between \Q$confirmed\E and [0-9A-F]+\/[0-9A-F]+ were not shipped/,
		$log_offset),
	'shipping from a new slot, the worker reports the whole gap');
$log = slurp_file($node->logfile, $log_offset);
my ($new_start, $gap_end) =
  $log =~ /new replication slot "walship" from ([0-9A-F]+\/[0-9A-F]+) on: changes committed between \S+ and ([0-9A-F]+\/[0-9A-F]+)/;
is($gap_end, $new_start, 'the gap ends where the new slot starts');
my ($lost_from, $lost_to) = $log =~ /was lost \(missing\): changes from (\S+) to (\S+) were not shipped/;
is($lost_to, $new_start, 'the slot-loss report names the same end');
cmp_ok(lsn_num($lost_from), '<=', lsn_num($confirmed),
	"and starts at or before the given-up slot's confirmed position ($lost_from)");
cmp_ok(lsn_num($new_start), '>=', lsn_num($given_up_end), 'the new slot starts after the slot was given up');
# the gap is reported before the new slot ships anything
my $gap_pos = index($log, 'ships from a new replication slot');
my $start_pos = index($log, 'walship started shipping slot "walship" from ' . $new_start);
ok($start_pos >= 0 && $gap_pos > $start_pos,
	'the report comes with the start of shipping from the new slot');
is(walship_status($node, 'wal_budget'), 'ok', 'walship.status: wal_budget is ok again');
like(walship_status($node, 'slot_given_up_at IS NOT NULL'), qr/^t$/,
	'walship.status: slot_given_up_at stays');
ok(poll_until($node, qq{
SELECT resync_state = 'done' AND resyncs = 1 AND gap_start_lsn = '$lost_from' AND gap_end_lsn = '$new_start'
  FROM walship.status}),
	'walship.status: the gap, and the resync done');

# the rows the gap held arrive as backfilled rows
sub acked_changes
{
	return map { body_changes($sink, $_->{seq}) } grep { is_2xx($_) } $sink->requests;
}
ok( grep({ ($_->{op} // '') eq 'r' && ($_->{after} // {})->{id} && $_->{after}{id} == 1 } acked_changes()),
	'the row committed in the gap is sent again by the resync');

# ---------------------------------------------------------------------------
# 5. Inside decoding: a large transaction that waits for the endpoint
# ---------------------------------------------------------------------------
ok(wait_streaming($node), 'the worker streams from the new slot');
$sink->set_behaviour({ default => { status => 503 } });
my $seq = $sink->last_seq;
$node->safe_psql('postgres',
	q{INSERT INTO items SELECT g, repeat('y', 200) FROM generate_series(100, 2099) g});
ok($sink->wait_for(sub { grep { $_->{seq} > $seq } @{ $_[0] } }),
	'the large transaction waits for the endpoint');
$confirmed = slot_confirmed_lsn($node);
$log_offset = -s $node->logfile;
fill_until($budget + 200_000);
ok( $node->wait_for_log(
		qr/ERROR:  walship gave up replication slot "walship" over walship\.max_retained_wal: changes committed after \Q$confirmed\E were not shipped/,
		$log_offset),
	'the slot is given up while the transaction waits inside decoding');
$sink->set_behaviour({ default => { status => 204 } });
ok( $node->wait_for_log(
		qr/walship ships from a new replication slot "walship" from \S+ on: changes committed between \Q$confirmed\E and/,
		$log_offset),
	'and the gap is reported again when a new slot ships');
ok(poll_until($node, q{SELECT resync_state = 'done' AND resyncs = 2 FROM walship.status}),
	'the second resync is done');
ok( grep({ ($_->{op} // '') eq 'r' && ($_->{after} // {})->{id} && $_->{after}{id} == 2099 } acked_changes()),
	'the large transaction\'s rows are sent again by the resync');
unlike(slurp_file($node->logfile, $log_offset), qr/PANIC|TRAP|terminated by signal/,
	'no crash');

# ---------------------------------------------------------------------------
# 6. The endpoint accepts again: new changes are shipped
# ---------------------------------------------------------------------------
ok(wait_streaming($node), 'streaming');
$node->safe_psql('postgres', q{INSERT INTO items VALUES (5000, 'after')});
my $end = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok(wait_worker_caught_up($node, $end), 'caught up');
ok( grep({ ($_->{op} // '') eq 'c' && ($_->{after} // {})->{id} && $_->{after}{id} == 5000 } acked_changes()),
	'the change made after is shipped');
is(walship_status($node, 'wal_budget'), 'ok', 'wal_budget ok');

$node->stop;
$sink->stop;
done_testing();
