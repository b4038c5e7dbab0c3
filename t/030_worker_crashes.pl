# Copyright (c) walship developers
#
# t/030_worker_crashes.pl
#	  The shipping worker's delivery guarantees under crashes, and its memory
#	  on a huge transaction:
#
#	  1. At least once under kill -9 of the worker and immediate shutdowns of
#	     the server, each while batches are in flight, during a steady
#	     workload of small transactions (inserts, updates, deletes) against a
#	     sink that answers slowly (and sometimes with 503).  Afterwards every
#	     committed change is in an acknowledged request at least once, and
#	     deduplicating by change id gives exactly the changes the walship
#	     plugin emits for that WAL: the source of truth is a second walship
#	     slot ("ref"), created before the workload and never consumed by the
#	     worker, peeked at the end.  Replaying the deduplicated changes in
#	     (commit LSN, ordinal) order gives the table's final contents.
#
#	  2. A 2,000,000-row transaction ships completely while the worker's
#	     resident memory (sampled from /proc/<pid>/status) stays bounded.
#
#	  Numbers worth knowing (wall time, peak RSS) are printed as diag lines.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use Cwd qw(abs_path);
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(time sleep);
use WalshipHttpSink;
use WalshipTest;

# Peak resident memory the worker may reach while shipping the 2M-row
# transaction.  logical_decoding_work_mem (64MB here) bounds the reorder
# buffer, and walship keeps about (max_inflight + 1) * batch_max_bytes of
# batches plus their encoded bodies.
my $rss_limit_kb = 300 * 1024;
my $big_rows = 2_000_000;

my $tmp = abs_path(PostgreSQL::Test::Utils::tempdir('worker_crashes'));
my $sink = WalshipHttpSink->new(dir => "$tmp/sink");

# answers take 80-300 ms, about 3% are 503 (retried); later answers 150 ms
srand(30);
my @script = map {
	rand() < 0.03
	  ? { status => 503, delay_ms => 50 }
	  : { status => 204, delay_ms => 80 + int(rand(220)) }
} 1 .. 600;
$sink->set_behaviour(
	{ default => { status => 204, delay_ms => 150 }, script => \@script });

my $node = worker_node('crashes', qq{
max_connections = 30
shared_buffers = 64MB
logical_decoding_work_mem = 64MB
# kill -9 of a backend makes the postmaster reinitialize; keep it running
restart_after_crash = on
walship.database = 'postgres'
walship.publication = 'wpub'
walship.endpoint = '${\ $sink->url('/ingest') }'
walship.format = 'ndjson'
walship.ndjson_shape = 'envelope'
walship.compression = 'none'
walship.batch_max_changes = 200
walship.batch_max_delay = 20ms
walship.max_inflight = 4
walship.retry_min_delay = 20ms
walship.retry_max_delay = 500ms
walship.http_timeout = 20s
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION walship;
CREATE TABLE w (id serial PRIMARY KEY, v int NOT NULL, t text NOT NULL);
CREATE TABLE big (id int NOT NULL);
CREATE PUBLICATION wpub FOR TABLE w, big;
});

# the worker finds the extension and the publication within 5 s
ok( $node->poll_query_until('postgres', q{
SELECT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = 'walship')
   AND (SELECT state = 'streaming' FROM walship.status)
}), 'worker created its slot and streams');

# The reference slot: same plugin, same publication, never consumed by the
# worker.  Nothing is written to the published tables until it exists.
$node->safe_psql('postgres',
	q{SELECT pg_create_logical_replication_slot('ref', 'walship')});

# Waits until the server answers and a walship worker other than $old_pid
# streams; returns its pid.
sub wait_for_worker
{
	my ($old_pid) = @_;
	wait_for_new_worker($node, $old_pid)
	  or die "walship worker did not come back after " . ($old_pid // 0);
	return worker_pid($node);
}

# ---------------------------------------------------------------------------
# 1. At least once under kill -9 and immediate shutdowns
# ---------------------------------------------------------------------------
my $pgbench_script = "$tmp/workload.sql";
PostgreSQL::Test::Utils::append_to_file($pgbench_script, q{
\set r random(1, 1000000)
\set k random(0, 40)
BEGIN;
INSERT INTO w (v, t) VALUES (:r, 'r' || :r);
INSERT INTO w (v, t) SELECT g, 'm' || g FROM generate_series(1, :k % 4) AS g;
UPDATE w SET v = v + 1, t = t || '+' WHERE id = (SELECT max(id) - :k FROM w);
DELETE FROM w WHERE id = (SELECT min(id) FROM w) AND :r % 3 = 0;
COMMIT;
});

# pgbench in a loop: a crash restart ends a run, the loop starts another
my $workload = start_workload($node, $tmp,
	'-c', 2, '-R', 250, '-T', 4, '--max-tries=20', '-f', $pgbench_script);

# Waits (up to 30 s) until the worker has requests in flight and the sink
# holds bodies it has not answered yet; returns the worker's pid.
sub wait_mid_batch
{
	my $deadline = time + 30;
	while (time < $deadline)
	{
		my ($pid, $inflight) = streaming_worker_inflight($node);
		if (defined $pid && $pid > 0 && $inflight > 0)
		{
			opendir(my $dh, "$tmp/sink/bodies") or die $!;
			my $bodies = grep { /^\d+\.bin$/ } readdir $dh;
			closedir $dh;
			my $answered = scalar(@{ $sink->requests });
			return $pid if $bodies > $answered;
		}
		sleep 0.02;
	}
	return undef;
}

my $t_start = time;
my $pid = worker_pid($node);
ok($pid, "worker runs (pid $pid)");
my @events = qw(kill9 kill9 immediate kill9 immediate kill9);
my $mid_batch = 0;
my %done;
sleep 2;	# let the workload reach its pace
foreach my $event (@events)
{
	my $victim = wait_mid_batch();
	$mid_batch++ if defined $victim;
	$victim //= worker_pid($node);
	if ($event eq 'kill9')
	{
		kill_worker($victim);
	}
	else
	{
		note "immediate shutdown with walship worker $victim shipping";
		$node->stop('immediate');
		$node->start;
	}
	$done{$event}++;
	$pid = wait_for_worker($victim);
	note "walship worker restarted as $pid";
	sleep 2.5;	# let it ship (and the workload run) a while
}
is($mid_batch, scalar(@events), 'every crash happened with batches in flight');
is($done{kill9}, 4, 'worker killed with SIGKILL 4 times');
is($done{immediate}, 2, 'server stopped in immediate mode 2 times');

sleep 2;
stop_workload($workload);
my $workload_seconds = time - $t_start;

my $end_lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok(wait_slot_confirmed($node, $end_lsn), "slot confirmed past the end of the workload ($end_lsn)");
ok(wait_worker_caught_up($node, $end_lsn), 'walship.status: streaming, caught up, nothing in flight');
my $catchup_seconds = time - $t_start - $workload_seconds;
diag(sprintf('scenario 1: workload with 6 crashes %.1f s, caught up %.1f s later; lag %s bytes',
	$workload_seconds, $catchup_seconds,
	$node->safe_psql('postgres', 'SELECT lag_bytes FROM walship.status')));
# answers to requests of killed workers may still be due
sleep 0.5;

my @acked = grep { is_2xx($_) } $sink->requests;
my @failed = grep { !defined $_->{status} || $_->{status} >= 300 } $sink->requests;
ok(scalar(@acked) > 50, scalar(@acked) . ' acknowledged requests, '
	  . scalar(@failed) . ' others (retried or from killed workers)');

my $ref_count = check_acked_against_reference($node, $sink, $tmp,
	publication => 'wpub');
my $ref_kinds = $node->safe_psql('postgres', q{
SELECT string_agg(kind || '=' || n, ',' ORDER BY kind)
  FROM (SELECT r->>'kind' AS kind, count(*) AS n FROM ref GROUP BY 1) AS k
});
ok($ref_count > 2000, "the workload committed $ref_count changes ($ref_kinds)");
my ($acked_lines, $acked_ids) = split /\|/, $node->safe_psql('postgres',
	q{SELECT count(*), count(DISTINCT line->>'id') FROM acked});
diag("scenario 1: $ref_count changes committed; $acked_lines acknowledged lines, "
	  . "$acked_ids distinct ids, "
	  . ($acked_lines - $acked_ids) . ' duplicates');

is(replayed_table_diff($node, 'w', qw(id v t)), '0',
	'replaying the deduplicated changes gives the table\'s contents');
my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM w');
ok($rows > 100, "the table holds $rows rows");

# Crashes were ours only: no other exit of the worker, nothing else crashed.
my $log = slurp_file($node->logfile);
is(worker_sigkills($log), 4, 'the log shows the 4 SIGKILLs of the worker');
my @other_exits = $log =~ /(background worker "walship worker" \(PID \d+\) (?:exited with exit code [1-9]|was terminated by signal (?:[0-8]|1\d)\b)[^\n]*)/g;
is(join("\n", @other_exits), '', 'the worker never exited on its own');
is(join("\n", worker_errors($log)), '', 'the worker logged no ERROR, FATAL or PANIC');

$node->safe_psql('postgres', q{SELECT pg_drop_replication_slot('ref')});

# ---------------------------------------------------------------------------
# 2. A 2,000,000-row transaction with bounded worker memory
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', q{
ALTER SYSTEM SET walship.batch_max_changes = 10000;
SELECT pg_reload_conf();
});
$sink->set_behaviour({ default => { status => 204 } });
$node->poll_query_until('postgres',
	q{SELECT current_setting('walship.batch_max_changes') = '10000'})
  or die 'reload not seen';
my $since = $sink->last_seq;
$pid = worker_pid($node);
my $spill_before = $node->safe_psql('postgres',
	q{SELECT coalesce(sum(spill_bytes), 0) FROM pg_stat_replication_slots WHERE slot_name = 'walship'});

sub proc_status
{
	my ($p) = @_;
	open(my $fh, '<', "/proc/$p/status") or return undef;
	my %s;
	while (<$fh>)
	{
		$s{$1} = $2 if /^(\w+):\s+(\d+) kB/;
	}
	close $fh;
	return \%s;
}

my $rss_start = proc_status($pid);
my ($insert_out, $insert_err) = ('', '');
my $t_big = time;
my $insert = IPC::Run::start(
	[
		$node->installed_command('psql'), '-XAtq', '-v', 'ON_ERROR_STOP=1',
		'-d', $node->connstr('postgres'),
		'-c', "INSERT INTO big SELECT g FROM generate_series(1, $big_rows) AS g",
		# after the commit, in a transaction of its own
		'-c', 'SELECT pg_current_wal_lsn()'
	],
	'<', \undef, '>', \$insert_out, '2>', \$insert_err);

my ($peak_rss, $peak_anon, $samples) = (0, 0, 0);
my ($big_end, $t_committed, $stalled);
my $deadline = time + 600;
my ($seen_seq, $t_progress) = ($since, time);
while (time < $deadline)
{
	my $s = proc_status($pid);
	last unless $s;
	$samples++;
	$peak_rss = $s->{VmRSS} if $s->{VmRSS} > $peak_rss;
	$peak_anon = $s->{RssAnon} if ($s->{RssAnon} // 0) > $peak_anon;
	$insert->pump_nb if !defined $big_end && $insert->pumpable;
	if (!defined $big_end && !$insert->pumpable)
	{
		$insert->finish;
		die "INSERT failed: $insert_err" if $?;
		($big_end) = $insert_out =~ m{([0-9A-F]+/[0-9A-F]+)};
		$t_committed = $t_progress = time;
	}
	if (defined $big_end && slot_confirmed_at_least($node, $big_end))
	{
		last;
	}
	# once committed, requests must keep coming until it is all shipped
	my $seq = $sink->last_seq;
	if ($seq != $seen_seq)
	{
		($seen_seq, $t_progress) = ($seq, time);
	}
	elsif (defined $big_end && time - $t_progress > 90)
	{
		$stalled = sprintf('no request for 90 s after %d requests; walship.status: %s',
			$seq - $since,
			$node->safe_psql('postgres',
				q{SELECT state, inflight, confirmed_lsn, decoded_lsn, last_error FROM walship.status}));
		last;
	}
	sleep 0.1;
}
is($stalled, undef, 'shipping the big transaction never stalls');
my $t_shipped = time;
my $rss_end = proc_status($pid);
ok(defined $big_end, "the $big_rows-row transaction committed (" . sprintf('%.1f s', ($t_committed // time) - $t_big) . ')')
  or die 'cannot go on without the big transaction';
ok(defined $rss_end, "the worker ($pid) is still the same process");
ok(slot_confirmed_at_least($node, $big_end), 'slot confirmed past the big transaction');
my $hwm = $rss_end ? $rss_end->{VmHWM} : 0;
my $spill = $node->safe_psql('postgres', qq{
SELECT coalesce(sum(spill_bytes), 0) - $spill_before FROM pg_stat_replication_slots WHERE slot_name = 'walship'});
diag(sprintf(
	'scenario 2: %d rows committed in %.1f s, shipped and confirmed %.1f s after commit '
	  . '(%.1f s total); worker VmRSS before %d MB, sampled peak %d MB (RssAnon %d MB, '
	  . '%d samples), VmHWM %d MB; decoding spilled %d MB',
	$big_rows, ($t_committed // $t_shipped) - $t_big, $t_shipped - ($t_committed // $t_shipped),
	$t_shipped - $t_big, ($rss_start->{VmRSS} // 0) / 1024, $peak_rss / 1024,
	$peak_anon / 1024, $samples, $hwm / 1024, $spill / (1024 * 1024)));
ok($hwm > 0 && $hwm < $rss_limit_kb,
	sprintf('worker peak RSS (VmHWM) %d MB is below %d MB', $hwm / 1024, $rss_limit_kb / 1024));
ok($peak_rss < $rss_limit_kb,
	sprintf('worker sampled RSS peak %d MB is below %d MB', $peak_rss / 1024, $rss_limit_kb / 1024));

# Count the big transaction's acknowledged insert ids: one bit per ordinal.
my ($bits, $lines, $distinct, $max_ordinal, $other, $requests) = ('', 0, 0, 0, 0, 0);
my %commit_lsns;
foreach my $r ($sink->requests(since => $since))
{
	next unless is_2xx($r);
	my $body = $sink->body($r->{seq});
	next unless defined $body;
	$requests++;
	while ($body =~ /^(.*)$/mg)
	{
		my $line = $1;
		next if $line eq '';
		$lines++;
		if ($line =~ /^\{"op": "c", .*"table": "big", .*"id": "([0-9A-F]{16})-(\d+)"\}$/)
		{
			$commit_lsns{$1}++;
			my $ord = $2;
			$max_ordinal = $ord if $ord > $max_ordinal;
			next if vec($bits, $ord, 1);
			vec($bits, $ord, 1) = 1;
			$distinct++;
		}
		else
		{
			$other++;
			note 'unexpected line: ' . substr($line, 0, 200) if $other <= 5;
		}
	}
}
diag(sprintf('scenario 2: %d acknowledged requests, %d lines', $requests, $lines));
is($distinct, $big_rows, "$big_rows distinct insert ids acknowledged");
is($max_ordinal, $big_rows, 'ordinals run up to the number of rows');
is(scalar(keys %commit_lsns), 1, 'all of them from one transaction');
is($other, 0, 'no other lines');
is($lines, $big_rows, 'no duplicates without crashes');

$node->stop;
done_testing();
