# Copyright (c) walship developers
#
# t/085_encoder_workers.pl
#	  walship.encoder_workers = 2: the decoding worker hands its batches to
#	  two encoder/sender workers through shared memory queues
#	  (src/encoder.c), which encode, compress (gzip here) and send them.
#
#	  1. Both encoders run (pg_stat_activity); the
#	     bodies are valid gzip (the sink decompresses them), and valid gzip
#	     and zstd at other walship.compression_level values.
#	  2. A reload reaches the encoders: a new walship.endpoint gets the
#	     next requests.
#	  3. Back-pressure: against a slow sink, both encoders hold batches
#	     (the work is shared), and no encoder ever holds more than
#	     walship.max_inflight + 1 batches, nor has more than
#	     walship.max_inflight requests in flight, while a backlog waits.
#	  4. At least once, while an orders-like workload runs and batches are
#	     in flight: kill -9 of an encoder, kill -9 of the decoding worker,
#	     and pg_terminate_backend() of an encoder (a clean exit, which
#	     restarts the decoding worker without a crash restart).  Afterwards
#	     every committed change is in an acknowledged request, and
#	     deduplicating by change id gives exactly the changes of a
#	     reference slot.
#
# IDENTIFICATION
#	  t/085_encoder_workers.pl

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use Cwd qw(abs_path);
use Time::HiRes qw(time sleep);
use WalshipHttpSink;
use WalshipTest;

my $tmp = abs_path(PostgreSQL::Test::Utils::tempdir('encoder_workers'));
my $sink = WalshipHttpSink->new(dir => "$tmp/sink");
$sink->set_behaviour({ default => { status => 204, delay_ms => 30 } });

my $max_inflight = 2;
my $node = worker_node('encoders', qq{
max_connections = 30
restart_after_crash = on
walship.encoder_workers = 2
walship.database = 'postgres'
walship.publication = 'opub'
walship.endpoint = '${\ $sink->url('/ingest') }'
walship.format = 'ndjson'
walship.ndjson_shape = 'envelope'
walship.compression = 'gzip'
walship.batch_max_changes = 100
walship.batch_max_delay = 20ms
walship.max_inflight = $max_inflight
walship.retry_min_delay = 20ms
walship.retry_max_delay = 500ms
walship.http_timeout = 20s
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION walship;
CREATE TABLE orders (id bigserial PRIMARY KEY, customer int NOT NULL,
                     country text NOT NULL, total numeric(12,2) NOT NULL,
                     status text NOT NULL DEFAULT 'new',
                     created_at timestamptz NOT NULL DEFAULT now());
CREATE PUBLICATION opub FOR TABLE orders;
});
ok(poll_until($node, q{
SELECT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = 'walship')
   AND (SELECT state = 'streaming' FROM walship.status)
}), 'worker created its slot and streams');
$node->safe_psql('postgres',
	q{SELECT pg_create_logical_replication_slot('ref', 'walship')});

# encoder pids from pg_stat_activity
sub encoder_pids
{
	my $out = try_query($node,
		q{SELECT string_agg(pid::text, ' ' ORDER BY pid) FROM pg_stat_activity WHERE backend_type = 'walship encoder'}) // '';
	return grep { /^\d+$/ } split / /, $out;
}

ok(poll_until($node, q{
SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'walship encoder'}),
	'two encoder workers run');

# ---------------------------------------------------------------------------
# 1. The encoders share the work; gzip bodies are valid
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', q{
INSERT INTO orders (customer, country, total)
SELECT g % 97, (ARRAY['DE','FR','US','JP'])[1 + g % 4], g * 1.5
  FROM generate_series(1, 1000) AS g;
});
my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok(wait_worker_caught_up($node, $lsn), 'a 1,000-row insert is acknowledged');
my @acked = grep { is_2xx($_) } $sink->requests;
my %ids;
foreach my $r (@acked)
{
	$ids{ $_->{id} }++ foreach body_changes($sink, $r->{seq});
}
is(scalar(keys %ids), 1000, 'all 1,000 changes arrived');
is(scalar(grep { ($_->{content_encoding} // '') ne 'gzip' || defined $_->{error} } @acked),
	0, 'every body was gzip and decoded by the sink');
ok(scalar(@acked) >= 10, scalar(@acked) . ' requests of at most 100 changes');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM pg_stat_activity
 WHERE backend_type = 'walship encoder' AND query LIKE 'walship encoder: %'}), '2',
	'both encoders report their work in pg_stat_activity');

# walship.compression_level: other levels still make bodies receivers decode
foreach my $case ([ 'gzip', 12 ], [ 'zstd', 19 ], [ 'zstd', -7 ], [ 'gzip', 0 ])
{
	my ($method, $level) = @$case;
	$node->safe_psql('postgres', qq{
ALTER SYSTEM SET walship.compression = '$method';
ALTER SYSTEM SET walship.compression_level = $level;
});
	$node->reload;
	sleep 1;
	my $from = $sink->last_seq;
	$node->safe_psql('postgres', qq{
INSERT INTO orders (customer, country, total)
SELECT g, 'L$level', g FROM generate_series(1, 200) AS g;
});
	my $l = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	ok(wait_worker_caught_up($node, $l), "$method level $level: acknowledged");
	my @r = grep { is_2xx($_) && $_->{seq} > $from } $sink->requests;
	my %got;
	foreach my $req (@r)
	{
		$got{ $_->{id} }++
		  foreach grep { ($_->{after}{country} // '') eq "L$level" } body_changes($sink, $req->{seq});
	}
	is(scalar(keys %got), 200, "$method level $level: all 200 changes decoded by the sink");
	is(scalar(grep { ($_->{content_encoding} // '') ne $method || defined $_->{error} } @r), 0,
		"$method level $level: every body was $method and decoded");
}
$node->safe_psql('postgres', q{
ALTER SYSTEM SET walship.compression = 'gzip';
ALTER SYSTEM RESET walship.compression_level;
});
$node->reload;
sleep 1;

# ---------------------------------------------------------------------------
# 2. A reload reaches the encoders
# ---------------------------------------------------------------------------
$node->safe_psql('postgres',
	"ALTER SYSTEM SET walship.endpoint = '" . $sink->url('/reloaded') . "'");
$node->reload;
# the postmaster signals every process; give them a moment to read it
sleep 1;
my $seq_before = $sink->last_seq;
$node->safe_psql('postgres', q{
INSERT INTO orders (customer, country, total)
SELECT g, 'NL', g FROM generate_series(1, 400) AS g;
});
$lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok(wait_worker_caught_up($node, $lsn), 'rows after the reload are acknowledged');
my @after = grep { $_->{seq} > $seq_before } $sink->requests;
is(scalar(grep { $_->{path} ne '/reloaded' } @after), 0,
	'every request after the reload went to the new endpoint');
my %reloaded_ids;
foreach my $r (grep { is_2xx($_) } @after)
{
	$reloaded_ids{ $_->{id} }++ foreach body_changes($sink, $r->{seq});
}
is(scalar(keys %reloaded_ids), 400, 'all 400 changes arrived there');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET walship.endpoint');
$node->reload;
sleep 1;

# walship.encoder_workers itself changes by reload, once nothing is pending
foreach my $n (0, 1, 2)
{
	$node->safe_psql('postgres', "ALTER SYSTEM SET walship.encoder_workers = $n");
	$node->reload;
	ok(poll_until($node, qq{
SELECT count(*) = $n FROM pg_stat_activity WHERE backend_type = 'walship encoder'}),
		"after a reload, $n encoder workers run");
	my $from = $sink->last_seq;
	$node->safe_psql('postgres', qq{
INSERT INTO orders (customer, country, total)
SELECT g, 'E$n', g FROM generate_series(1, 300) AS g;
});
	$lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	ok(wait_worker_caught_up($node, $lsn), "$n encoder workers: rows acknowledged");
	my %seen;
	foreach my $r (grep { is_2xx($_) && $_->{seq} > $from } $sink->requests)
	{
		$seen{ $_->{id} }++
		  foreach grep { ($_->{after}{country} // '') eq "E$n" } body_changes($sink, $r->{seq});
	}
	is(scalar(keys %seen), 300, "$n encoder workers: all 300 changes arrived");
}
like(slurp_file($node->logfile), qr/walship switches from 2 to 0 encoder workers/,
	'the switch is logged');

# ---------------------------------------------------------------------------
# 3. Back-pressure against a slow sink
# ---------------------------------------------------------------------------
$sink->set_behaviour({ default => { status => 204, delay_ms => 700 } });
$node->safe_psql('postgres', q{
INSERT INTO orders (customer, country, total)
SELECT g, 'SE', g FROM generate_series(1, 6000) AS g;
});
$lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
my ($most_batches, $most_inflight, $samples) = (0, 0, 0);
my %busy;	# encoder pid => most batches it held
my $deadline = time + 120;
while (time < $deadline)
{
	my $out = try_query($node, q{
SELECT string_agg(pid || ',' || substring(query FROM 'walship encoder: (\d+) batches') || ',' ||
                  substring(query FROM '(\d+) requests in flight'), ' ')
  FROM pg_stat_activity WHERE backend_type = 'walship encoder'}) // '';
	foreach my $triple (split / /, $out)
	{
		my ($pid, $b, $i) = split /,/, $triple;
		next unless defined $i;
		$busy{$pid} = $b if $b > ($busy{$pid} // 0);
		$most_batches = $b if $b > $most_batches;
		$most_inflight = $i if $i > $most_inflight;
		$samples++;
	}
	last if slot_confirmed_at_least($node, $lsn);
	sleep 0.1;
}
ok(slot_confirmed_at_least($node, $lsn) || wait_slot_confirmed($node, $lsn),
	'the 6,000-row backlog is shipped through the slow sink');
note "back-pressure: $samples samples, most batches $most_batches, most in flight $most_inflight";
ok($most_batches >= $max_inflight, "encoders were kept busy (up to $most_batches batches)");
is(scalar(grep { $_ > 0 } values %busy), 2, 'both encoders held batches: the work is shared');
ok($most_batches <= $max_inflight + 1,
	"no encoder held more than max_inflight + 1 batches (most: $most_batches)");
ok($most_inflight <= $max_inflight,
	"no encoder had more than max_inflight requests in flight (most: $most_inflight)");
$sink->set_behaviour({ default => { status => 204, delay_ms => 30 } });

# ---------------------------------------------------------------------------
# 4. At least once under kill -9 of each process, and a clean exit
# ---------------------------------------------------------------------------
my $pgbench_script = "$tmp/workload.sql";
PostgreSQL::Test::Utils::append_to_file($pgbench_script, q{
\set r random(1, 1000000)
\set k random(0, 40)
BEGIN;
INSERT INTO orders (customer, country, total) VALUES (:r % 500, 'C' || (:r % 7), :r / 100.0);
INSERT INTO orders (customer, country, total) SELECT g, 'M', g FROM generate_series(1, :k % 4) AS g;
UPDATE orders SET status = 'paid', total = total + 1 WHERE id = (SELECT max(id) - :k FROM orders);
DELETE FROM orders WHERE id = (SELECT min(id) FROM orders) AND :r % 3 = 0;
COMMIT;
});
my $workload = start_workload($node, $tmp,
	'-c', 2, '-R', 200, '-T', 4, '--max-tries=20', '-f', $pgbench_script);

# Waits until requests are in flight and the sink holds unanswered bodies.
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
			return 1 if $bodies > scalar(@{ $sink->requests });
		}
		sleep 0.02;
	}
	return 0;
}

# Waits for a streaming worker other than $old and two encoders again.
sub wait_pipeline_back
{
	my ($old) = @_;
	wait_for_new_worker($node, $old) or die "walship worker did not come back";
	poll_until($node, q{
SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'walship encoder'})
	  or die "encoders did not come back";
	return worker_pid($node);
}

sleep 1.5;
my $mid = 0;
foreach my $event (qw(kill_encoder kill_decoder terminate_encoder))
{
	$mid += wait_mid_batch();
	my $decoder = worker_pid($node);
	my @encoders = encoder_pids();
	if ($event eq 'kill_encoder')
	{
		kill 'KILL', $encoders[0] or die "kill $encoders[0]: $!";
		note "kill -9 of walship encoder $encoders[0]";
	}
	elsif ($event eq 'kill_decoder')
	{
		kill_worker($decoder);
	}
	else
	{
		note "pg_terminate_backend() of walship encoder $encoders[1]";
		try_query($node, "SELECT pg_terminate_backend($encoders[1])");
	}
	my $new = wait_pipeline_back($decoder);
	ok($new != $decoder, "$event: the pipeline came back (worker $new)");
	sleep 2;
}
is($mid, 3, 'every interruption happened with requests in flight');

my $log = slurp_file($node->logfile);
like($log, qr/background worker "walship encoder" \(PID \d+\) was terminated by signal 9/,
	'the log shows the encoder killed');
like($log, qr/walship encoder worker \d exited/,
	'the decoding worker noticed the terminated encoder');

sleep 1;
stop_workload($workload);

my $end_lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok(wait_slot_confirmed($node, $end_lsn), "slot confirmed past the end of the workload ($end_lsn)");
ok(wait_worker_caught_up($node, $end_lsn), 'walship.status: caught up, nothing in flight');
sleep 1;

my $ref_count = check_acked_against_reference($node, $sink, $tmp,
	publication => 'opub');
ok($ref_count > 2000, "the source committed $ref_count changes");

$node->stop;

# ---------------------------------------------------------------------------
# 5. Too few background worker slots: the encoders that start do the work
# ---------------------------------------------------------------------------
# max_worker_processes = 3: the logical replication launcher, the walship
# worker and one encoder
my $small = worker_node('few_slots', qq{
max_worker_processes = 3
walship.encoder_workers = 2
walship.database = 'postgres'
walship.publication = 'spub'
walship.endpoint = '${\ $sink->url('/few') }'
walship.batch_max_delay = 20ms
});
$small->start;
$small->safe_psql('postgres', q{
CREATE EXTENSION walship;
CREATE TABLE s (id int PRIMARY KEY);
CREATE PUBLICATION spub FOR TABLE s;
});
ok(poll_until($small, q{SELECT state = 'streaming' FROM walship.status}),
	'few slots: the worker streams');
ok(poll_until($small, q{
SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'walship encoder'}),
	'few slots: one encoder worker runs');
like(slurp_file($small->logfile), qr/walship could start only 1 of 2 encoder workers/,
	'few slots: a warning says so');
my $few_from = $sink->last_seq;
$small->safe_psql('postgres', 'INSERT INTO s SELECT generate_series(1, 500)');
$lsn = $small->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok(wait_worker_caught_up($small, $lsn), 'few slots: rows acknowledged');
my %few;
foreach my $r (grep { is_2xx($_) && $_->{seq} > $few_from && $_->{path} eq '/few' } $sink->requests)
{
	$few{ $_->{id} }++ foreach body_changes($sink, $r->{seq});
}
is(scalar(keys %few), 500, 'few slots: all 500 changes arrived');
$small->stop;

done_testing();
