# Copyright (c) 2026, walship developers
#
# t/080_metrics.pl
#	  walship.metrics() (issue 12): Prometheus text that a strict parser and
#	  `promtool check metrics` accept; the LSN ladder (confirmed <=
#	  acknowledged <= sent <= decoded), with sent ahead of acknowledged
#	  while the endpoint answers 503; counters, retries and rejects as the
#	  sink saw them; the commit-to-ack histogram counting every batch done;
#	  backfill progress; who may read it.  Then the real
#	  prometheus-postgres-exporter with contrib/prometheus/walship-queries.yaml,
#	  connected as a pg_monitor member, scraped over HTTP: the same series
#	  with the same values.  Last, the alert rules of
#	  contrib/prometheus/walship-alerts.yml pass `promtool check rules` and
#	  their unit tests (`promtool test rules`).
use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use HTTP::Tiny;
use IO::Socket::INET;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use WalshipHttpSink;
use WalshipTest;

my $contrib = "$FindBin::RealBin/../contrib/prometheus";
my $exporter_bin = '/usr/bin/prometheus-postgres-exporter';
my $promtool = '/usr/bin/promtool';
for my $tool ($exporter_bin, $promtool)
{
	BAIL_OUT("$tool is missing (test/run-all.sh installs it)") unless -x $tool;
}

my $sink = WalshipHttpSink->new(dir => PostgreSQL::Test::Utils::tempdir());

my $node = worker_node('metrics', q{
walship.batch_max_delay = '20ms'
walship.retry_min_delay = '100ms'
walship.retry_max_delay = '300ms'
walship.on_rejected = 'dead_letter'
max_slot_wal_keep_size = '1GB'
} . "walship.endpoint = '" . $sink->url('/ingest') . "'\n");
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION walship;
CREATE TABLE items (id int PRIMARY KEY, v text);
CREATE PUBLICATION walship FOR TABLE items;
CREATE ROLE plain LOGIN;
CREATE ROLE monitor LOGIN IN ROLE pg_monitor;
CREATE ROLE adm LOGIN IN ROLE walship_admin;
});
ok(wait_streaming($node), 'the worker streams');

# ---------------------------------------------------------------------------
# A strict parser of the text exposition format 0.0.4, as walship writes it
# ---------------------------------------------------------------------------

# Parses $text; dies on anything out of place.  Returns { types => {family
# => type}, samples => {"name{labels}" => value} } (labels sorted, as
# name="value" joined by commas).
sub parse_prometheus
{
	my ($text, %opts) = @_;
	my (%types, %help, %samples, $family);
	my $name_re = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
	my $value_re = qr/[-+]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|NaN|[-+]?Inf)/;
	die "metrics text must end with a newline\n" unless $text =~ /\n\z/;
	for my $line (split /\n/, $text)
	{
		if ($line =~ /^# HELP ($name_re) (.+)$/)
		{
			die "second HELP for $1\n" if $help{$1}++;
			$family = $1;
			next;
		}
		if ($line =~ /^# TYPE ($name_re) (counter|gauge|histogram|summary|untyped)$/)
		{
			die "second TYPE for $1\n" if $types{$1};
			die "TYPE $1 after the HELP of another family\n"
			  if !$opts{any_order} && (!defined $family || $family ne $1);
			$types{$1} = $2;
			next;
		}
		die "stray comment: $line\n" if $line =~ /^#/;
		die "bad sample line: '$line'\n"
		  unless $line =~ /^($name_re)(?:\{((?:$name_re="(?:[^"\\\n]|\\.)*")(?:,$name_re="(?:[^"\\\n]|\\.)*")*)\})? ($value_re)$/;
		my ($name, $labels, $value) = ($1, $2 // '', $3);
		(my $base = $name) =~ s/_(?:bucket|sum|count)$//;
		my $fam = exists $types{$name} ? $name : $base;
		die "sample $name without a TYPE\n" unless $types{$fam};
		die "sample $name outside its family\n"
		  if !$opts{any_order} && $fam ne $family;
		die "counter $fam does not end in _total\n"
		  if $types{$fam} eq 'counter' && $fam !~ /_total$/;
		my $key = $name . '{' . join(',', sort split /,(?=$name_re=")/, $labels) . '}';
		die "duplicate sample $key\n" if exists $samples{$key};
		$samples{$key} = $value;
	}
	# histograms: cumulative, bounds ascending, +Inf bucket = _count
	for my $fam (grep { $types{$_} eq 'histogram' } keys %types)
	{
		my @b = map { /le="([^"]+)"/ ? [ $1, $samples{$_} ] : () }
		  grep { /^\Q$fam\E_bucket\{/ } keys %samples;
		@b = sort { ($a->[0] eq '+Inf' ? 9**9**9 : $a->[0]) <=> ($b->[0] eq '+Inf' ? 9**9**9 : $b->[0]) } @b;
		die "histogram $fam has no +Inf bucket\n" unless @b && $b[-1][0] eq '+Inf';
		for my $i (1 .. $#b)
		{
			die "histogram $fam is not cumulative at le=$b[$i][0]\n" if $b[$i][1] < $b[ $i - 1 ][1];
		}
		my ($count) = map { $samples{$_} } grep { /^\Q$fam\E_count\{/ } keys %samples;
		die "histogram $fam: +Inf bucket $b[-1][1] is not _count $count\n"
		  unless defined $count && $count == $b[-1][1];
	}
	return { types => \%types, samples => \%samples };
}

my $last_text;

# walship.metrics() as $role, parsed; also checked by promtool.
sub metrics
{
	my ($role) = @_;
	my $text = $node->safe_psql('postgres', 'SELECT walship.metrics()',
		extra_params => [ '-U', $role // 'postgres' ]) . "\n";
	$last_text = $text;
	my $m = eval { parse_prometheus($text) };
	die "walship.metrics() does not parse: $@\n$text" unless $m;
	return $m;
}

# One sample's value, or undef.
sub val
{
	my ($m, $key) = @_;
	$key .= '{}' unless $key =~ /\}$/;
	return $m->{samples}{$key};
}

# Polls walship.metrics() until $cond->($m) holds; returns the last parse
# and whether it held.
sub wait_metrics
{
	my ($cond) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	my $m;
	while (time < $deadline)
	{
		$m = metrics();
		return ($m, 1) if $cond->($m);
		sleep 0.1;
	}
	return ($m, 0);
}

sub current_lsn
{
	return lsn_num($node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()'));
}

sub ladder_ok
{
	my ($m, $what) = @_;
	my @rungs = map { val($m, "walship_${_}_lsn_bytes") }
	  qw(confirmed acknowledged sent decoded current);
	ok(!(grep { !defined } @rungs)
		  && $rungs[0] <= $rungs[1] && $rungs[1] <= $rungs[2]
		  && $rungs[2] <= $rungs[3] && $rungs[3] <= $rungs[4],
		"$what: confirmed <= acknowledged <= sent <= decoded <= current ("
		  . join(' ', map { $_ // 'undef' } @rungs) . ')');
	return;
}

# ---------------------------------------------------------------------------
# 1. The format, and who may read it
# ---------------------------------------------------------------------------
my $m = metrics();
{
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([ $promtool, 'check', 'metrics' ], '<', \$last_text, '>', \$out, '2>', \$err);
	ok($ok, 'promtool check metrics accepts walship.metrics()') or diag("$out$err");
}
is($m->{types}{walship_commit_to_ack_seconds}, 'histogram', 'the latency is a histogram');
is($m->{types}{walship_retries_total}, 'counter', 'retries are a counter');
is(val($m, 'walship_state_active{state="streaming"}'), 1, 'state streaming is 1');
is(scalar(grep { /^walship_state_active\{/ && $m->{samples}{$_} == 1 } keys %{ $m->{samples} }),
	1, 'exactly one state is active');
is(val($m, 'walship_worker_up'), 1, 'worker_up is 1');
# walship.max_retained_wal where that setting exists and is positive, else
# max_slot_wal_keep_size (1GB here)
is(val($m, 'walship_retained_wal_budget_bytes'), $node->safe_psql('postgres', q{
SELECT CASE WHEN pg_size_bytes(coalesce(current_setting('walship.max_retained_wal', true), '-1')) > 0
            THEN pg_size_bytes(current_setting('walship.max_retained_wal', true))
            ELSE pg_size_bytes(current_setting('max_slot_wal_keep_size')) END}),
	'the WAL budget: walship.max_retained_wal if set, else max_slot_wal_keep_size');
$node->safe_psql('postgres', q{ALTER SYSTEM SET walship.max_retained_wal = '3GB'});
$node->reload;
is(val(metrics(), 'walship_retained_wal_budget_bytes'), 3 * 1024**3,
	'the WAL budget is walship.max_retained_wal once it is set');
$node->safe_psql('postgres', q{ALTER SYSTEM RESET walship.max_retained_wal});
$node->reload;
is(val(metrics(), 'walship_retained_wal_budget_bytes'), 1024**3,
	'and max_slot_wal_keep_size again once it is reset');
my @le = map { /le="([^"]+)"/ ? $1 : () } grep { /^walship_commit_to_ack_seconds_bucket/ } split /\n/, $last_text;
is(join(',', @le), '0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10,30,60,120,300,900,3600,+Inf',
	'the histogram has the documented buckets, in order');
unlike($last_text, qr/127\.0\.0\.1|ingest|http/, 'no endpoint in the metrics');

my ($ret, $stdout, $stderr) = $node->psql('postgres', 'SELECT walship.metrics()',
	extra_params => [ '-U', 'plain' ]);
like($stderr, qr/permission denied for function metrics/, 'a plain role may not read the metrics');
ok(eval { metrics('monitor') }, 'a pg_monitor member may read the metrics');
ok(eval { metrics('adm') }, 'a walship_admin member may read the metrics');
like($node->safe_psql('postgres', 'SELECT count(*) FROM walship.metrics_backfills()',
		extra_params => [ '-U', 'monitor' ]), qr/^5$/,
	'a pg_monitor member sees the backfill counts (walship.backfills is not readable to it)');

# ---------------------------------------------------------------------------
# 2. Shipping: the ladder, counters, the histogram
# ---------------------------------------------------------------------------
my $before = metrics();
$node->safe_psql('postgres', q{INSERT INTO items SELECT g, 'x' FROM generate_series(1, 3) g});
my $lsn = current_lsn();
my $ok;
($m, $ok) = wait_metrics(sub {
	val($_[0], 'walship_confirmed_lsn_bytes') >= $lsn && val($_[0], 'walship_inflight_requests') == 0
});
ok($ok, 'the transaction is acknowledged and confirmed');
ladder_ok($m, 'after shipping');
ok(val($m, 'walship_acknowledged_lsn_bytes') >= $lsn, 'acknowledged_lsn reached the commit');
is(val($m, 'walship_shipped_changes_total') - val($before, 'walship_shipped_changes_total'),
	3, 'three changes counted');
ok(val($m, 'walship_shipped_batches_total') > val($before, 'walship_shipped_batches_total'),
	'a batch counted');
ok(val($m, 'walship_shipped_bytes_total') > val($before, 'walship_shipped_bytes_total'),
	'bytes counted');
is(val($m, 'walship_commit_to_ack_seconds_count'), val($m, 'walship_shipped_batches_total'),
	'the histogram counts every batch done');
ok(val($m, 'walship_commit_to_ack_seconds_sum') > 0, 'the latencies add up to more than 0');
ok(val($m, 'walship_last_success_timestamp_seconds') > time - 600
	  && val($m, 'walship_last_success_timestamp_seconds') <= time + 1,
	'last success is a recent Unix time');
is(val($m, 'walship_last_http_status'), 204, 'last HTTP status');

# the ladder as walship.status and the slot see it
my ($status_confirmed, $slot_confirmed) = split /\|/, $node->safe_psql('postgres',
	q{SELECT s.confirmed_lsn, r.confirmed_flush_lsn FROM walship.status s, pg_replication_slots r WHERE r.slot_name = 'walship'});
ok(lsn_num($status_confirmed) >= val($m, 'walship_confirmed_lsn_bytes'),
	'confirmed_lsn_bytes is walship.status.confirmed_lsn (or behind it, read earlier)');

# ---------------------------------------------------------------------------
# 3. Retries: sent moves ahead of acknowledged while the endpoint says 503
# ---------------------------------------------------------------------------
$before = metrics();
my $seq_before = $sink->last_seq;
$sink->set_default({ status => 503 });
$node->safe_psql('postgres', q{INSERT INTO items VALUES (10, 'retry')});
$lsn = current_lsn();
($m, $ok) = wait_metrics(sub {
	val($_[0], 'walship_retries_total') >= val($before, 'walship_retries_total') + 2
	  && val($_[0], 'walship_sent_lsn_bytes') >= $lsn
	  && val($_[0], 'walship_state_active{state="backoff"}') == 1
});
ok($ok, 'retries counted, state backoff, the transaction sent');
ok(val($m, 'walship_acknowledged_lsn_bytes') < $lsn,
	'while the endpoint answers 503: acknowledged stays behind the commit that was sent');
ok(val($m, 'walship_confirmed_lsn_bytes') < $lsn, 'and the slot is not confirmed past it');
ladder_ok($m, 'while retrying');
ok(val($m, 'walship_freshness_seconds') > 0, 'freshness counts the waiting commit');

$sink->set_default({ status => 204 });
($m, $ok) = wait_metrics(sub {
	val($_[0], 'walship_confirmed_lsn_bytes') >= $lsn && val($_[0], 'walship_inflight_requests') == 0
	  && val($_[0], 'walship_state_active{state="streaming"}') == 1
});
ok($ok, 'endpoint back: acknowledged and confirmed');
ladder_ok($m, 'after the retries');
my $answered_503 = grep { $_->{seq} > $seq_before && ($_->{status} // 0) == 503 } $sink->requests;
is(val($m, 'walship_retries_total') - val($before, 'walship_retries_total'), $answered_503,
	"retries_total grew by the sink's 503 answers ($answered_503)");
is(val($m, 'walship_commit_to_ack_seconds_count'), val($m, 'walship_shipped_batches_total'),
	'the histogram still counts every batch done');
ok(val($m, 'walship_commit_to_ack_seconds_sum') - val($before, 'walship_commit_to_ack_seconds_sum') >= 0.1,
	'the retried batch waited at least its two backoffs (>= 50 ms + 100 ms)');

# ---------------------------------------------------------------------------
# 4. Rejects: a 400 sets the batch aside as a dead letter
# ---------------------------------------------------------------------------
$before = metrics();
$sink->set_behaviour({ default => { status => 204 }, script => [ { status => 400, body => 'bad' } ] });
$node->safe_psql('postgres', q{INSERT INTO items VALUES (20, 'rejected')});
$lsn = current_lsn();
($m, $ok) = wait_metrics(sub {
	val($_[0], 'walship_rejected_batches_total') == val($before, 'walship_rejected_batches_total') + 1
	  && val($_[0], 'walship_confirmed_lsn_bytes') >= $lsn
});
ok($ok, 'rejected_batches_total counted the rejection');
is($node->safe_psql('postgres', 'SELECT count(*) FROM walship.dead_letter'), '1', 'one dead letter');
is(val($m, 'walship_commit_to_ack_seconds_count'), val($m, 'walship_shipped_batches_total'),
	'a dead-lettered batch is done, and counted in the histogram');
ladder_ok($m, 'after the rejection');

# ---------------------------------------------------------------------------
# 5. Backfill progress
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', q{SELECT walship.backfill('items', 2)});
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM walship.backfills WHERE state IN ('queued', 'running')}),
	'the backfill finishes');
$m = metrics();
my %expected = map { $_ => [ 0, 0 ] } qw(queued running done cancelled failed);
for (split /\n/, $node->safe_psql('postgres',
		'SELECT state, count(*), sum(rows_sent) FROM walship.backfills GROUP BY state'))
{
	my ($state, $n, $rows) = split /\|/;
	$expected{$state} = [ $n, $rows ];
}
ok($expected{done}[0] >= 1 && $expected{done}[1] >= 5, 'the backfill shipped the 5 rows');
for my $state (sort keys %expected)
{
	is(val($m, "walship_backfill_tables{state=\"$state\"}") . '/' . val($m, "walship_backfill_rows_sent{state=\"$state\"}"),
		"$expected{$state}[0]/$expected{$state}[1]", "backfills $state: tables/rows as walship.backfills has them");
}
ok(val($m, 'walship_commit_to_ack_seconds_count') <= val($m, 'walship_shipped_batches_total'),
	'backfill batches (no commit) are not in the latency histogram');

# ---------------------------------------------------------------------------
# 6. The real prometheus-postgres-exporter, with walship-queries.yaml
# ---------------------------------------------------------------------------
sub free_port
{
	my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Listen => 1)
	  or die "no free port: $!";
	my $port = $s->sockport;
	close $s;
	return $port;
}

# quiet: nothing left to ship
ok(wait_worker_caught_up($node, lsn_text(current_lsn())), 'the worker is caught up');

my $port = free_port();
my $exporter_log = $node->basedir . '/exporter.log';
local $ENV{DATA_SOURCE_NAME} = sprintf('host=%s port=%d user=monitor dbname=postgres sslmode=disable',
	$node->host, $node->port);
# only walship's series: every built-in collector enabled by default off,
# by the names this exporter's --help gives (0.11 in Debian 12 has
# "bgwriter", 0.17 in Debian 13 "stat_bgwriter", and more)
my $exporter_help = `$exporter_bin --help 2>&1`;
my @no_collectors = map { "--no-collector.$_" }
  ($exporter_help =~ /--collector\.(\w+)\s+Enable the \w+ collector\s+\(default:\s+enabled\)/g);
ok(scalar(@no_collectors) > 0, 'the exporter\'s default collectors are known from --help')
  or diag($exporter_help);
my $exporter = IPC::Run::start(
	[
		$exporter_bin, "--web.listen-address=127.0.0.1:$port",
		"--extend.query-path=$contrib/walship-queries.yaml",
		'--disable-default-metrics', '--disable-settings-metrics',
		@no_collectors,
	],
	'<', \undef, '>', $exporter_log, '2>&1');

my $http = HTTP::Tiny->new(timeout => 10);
my ($scrape, $before_scrape, $after_scrape);
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
while (time < $deadline)
{
	$before_scrape = metrics();
	my $res = $http->get("http://127.0.0.1:$port/metrics");
	if ($res->{success} && $res->{content} =~ /^walship_worker_up\{/m)
	{
		$scrape = $res->{content};
		last;
	}
	sleep 0.2;
}
$after_scrape = metrics();
ok(defined $scrape, 'the exporter serves walship series')
  or diag(slurp_file($exporter_log));
$scrape //= '';

# only the walship families: go_*, process_* and the exporter's own are not ours
my @walship_lines;
{
	my $keep = 0;
	for (split /\n/, $scrape)
	{
		$keep = /^# (?:HELP|TYPE) walship_/ ? 1 : /^# / ? 0 : $keep;
		push @walship_lines, $_ if /^walship_/ || (/^# / && $keep);
	}
}
my $e = eval { parse_prometheus(join("\n", @walship_lines) . "\n", any_order => 1) };
ok($e, 'the exporter\'s walship series parse') or diag($@);
$e //= { types => {}, samples => {} };

# the same families, with the same types
my @families = sort grep { $before_scrape->{types}{$_} } keys %{ $before_scrape->{types} };
my @missing = grep { ($e->{types}{$_} // '') ne $before_scrape->{types}{$_} } @families;
is_deeply(\@missing, [], 'every family of walship.metrics() is exported, with its type');

# exporter samples without the exporter's server label
my %exported;
for my $key (keys %{ $e->{samples} })
{
	(my $k = $key) =~ s/(?:server="[^"]*",?|,server="[^"]*")//;
	$k =~ s/,\}/}/;
	$exported{$k} = $e->{samples}{$key};
}

my @stable = grep { !/_lsn_bytes|lag_bytes|retained_wal_bytes|safe_wal_size|freshness|inflight/ }
  keys %{ $before_scrape->{samples} };
my @differ = grep {
	!defined $exported{$_} || $exported{$_} != $before_scrape->{samples}{$_}
	  || $after_scrape->{samples}{$_} != $before_scrape->{samples}{$_}
} @stable;
is_deeply([ sort @differ ], [], 'counters, states, histogram and backfill series: the exporter shows walship.metrics() values')
  or diag(join("\n", map { "$_: exporter " . ($exported{$_} // 'missing') . ", metrics() $before_scrape->{samples}{$_}" } sort @differ));
ok(@stable > 40, 'that is many series (' . scalar(@stable) . ')');
for my $g (qw(confirmed_lsn_bytes acknowledged_lsn_bytes sent_lsn_bytes decoded_lsn_bytes current_lsn_bytes))
{
	my ($lo, $hi, $x) = map { $_->{samples}{"walship_$g\{}"} } $before_scrape, $after_scrape, { samples => \%exported };
	($lo, $hi) = ($hi, $lo) if defined $lo && defined $hi && $lo > $hi;
	ok(defined $x && defined $lo && $x >= $lo && $x <= $hi,
		"walship_$g from the exporter ($x) is between walship.metrics() before and after ($lo, $hi)");
}
for my $g (qw(lag_bytes retained_wal_bytes safe_wal_size_bytes))
{
	ok(defined $exported{"walship_$g\{}"} && $exported{"walship_$g\{}"} >= 0,
		"walship_$g from the exporter is a size");
}
is($exported{'walship_state_active{state="streaming"}'}, 1, 'the exporter shows the state streaming');

$exporter->kill_kill;
$exporter->finish;

# ---------------------------------------------------------------------------
# 7. The alert rules
# ---------------------------------------------------------------------------
for my $cmd ([ 'check', 'rules', 'walship-alerts.yml' ], [ 'test', 'rules', 'walship-alerts.test.yml' ])
{
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([ 'bash', '-c', 'cd "$1" && shift && exec "$@"', 'promtool', $contrib, $promtool, @$cmd ],
		'<', \undef, '>', \$out, '2>', \$err);
	ok($ok, "promtool @$cmd") or diag("$out$err");
	like($out . $err, qr/SUCCESS/, "promtool @$cmd says SUCCESS");
}

$node->stop;
done_testing();
