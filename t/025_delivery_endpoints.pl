# Copyright (c) walship developers
#
# t/025_delivery_endpoints.pl
#	  Delivery with per-table endpoints (walship.endpoint with {schema} and
#	  {table}) and the endpoint as a whole:
#	    1. dead letters of one table's requests while another table's request
#	       of the same batch is split (413): each dead letter keeps its own
#	       table's body and endpoint, and is written once; a batch
#	       regrouped by an endpoint reload does not send a dead-lettered
#	       table's lines again;
#	    2. changing walship.endpoint by reload reaches batches prepared (and
#	       failing) already;
#	    3. Retry-After is capped by walship.retry_max_delay, holds back every
#	       request to the endpoint while it lasts, and walship.status says
#	       backoff while a batch waits to be retried;
#	    4. {table} values "..", "." and "a/b" stay one percent-encoded path
#	       segment.
#
# IDENTIFICATION
#	  t/025_delivery_endpoints.pl

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use WalshipHttpSink;
use WalshipTest;

my $json = JSON::PP->new->utf8;

my $tmp = PostgreSQL::Test::Utils::tempdir('delivery_endpoints');
my $sink = WalshipHttpSink->new(dir => "$tmp/sink",
	behaviour => { default => { status => 204 } });
my $template = '/t/{schema}/{table}';

my $node = worker_node('endpoints', q{
walship.publication = 'walship'
walship.format = 'ndjson'
walship.ndjson_shape = 'envelope'
walship.batch_max_delay = '20ms'
walship.retry_min_delay = '50ms'
walship.retry_max_delay = '1s'
walship.on_rejected = 'dead_letter'
} . "walship.endpoint = '" . $sink->url($template) . "'\n");
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION walship;
CREATE TABLE ta (id serial PRIMARY KEY, payload text);
CREATE TABLE tb (id serial PRIMARY KEY, payload text);
CREATE TABLE ".." (id int PRIMARY KEY);
CREATE TABLE "." (id int PRIMARY KEY);
CREATE TABLE "a/b" (id int PRIMARY KEY);
CREATE PUBLICATION walship FOR TABLE ta, tb, "..", ".", "a/b";
SELECT pg_create_logical_replication_slot('audit', 'walship');
});

ok(wait_streaming($node), 'the worker streams');

sub reload_with
{
	my (%set) = @_;
	for my $name (sort keys %set)
	{
		if (defined $set{$name})
		{
			$node->safe_psql('postgres', "ALTER SYSTEM SET walship.$name = '$set{$name}'");
		}
		else
		{
			$node->safe_psql('postgres', "ALTER SYSTEM RESET walship.$name");
		}
	}
	$node->reload;
	# the worker applies a reload within one turn of its loop (10 ms)
	sleep 0.5;
}

# The changes committed since the previous call, from the "audit" slot.
sub committed_changes { return [ parse_ndjson(slot_ndjson($node, 'audit', 'walship')) ]; }

sub table_of { my ($change) = @_; return $change->{source}{table}; }

# Change ids acknowledged by $s (default: the sink), by table.
sub acked_ids_by_table
{
	my ($s) = @_;
	$s //= $sink;
	my %ids;
	for my $r (grep { is_2xx($_) } @{ $s->requests })
	{
		$ids{ table_of($_) }{ $_->{id} }++ for body_changes($s, $r->{seq});
	}
	return \%ids;
}

sub wait_confirmed_past
{
	my ($what, $changes) = @_;
	my $max = 0;
	for (@$changes)
	{
		my $n = lsn_num($_->{source}{commit_lsn});
		$max = $n if $n > $max;
	}
	ok(wait_slot_confirmed($node, lsn_text($max + 1)),
		"$what: the slot is confirmed past the changes");
}

# ---------------------------------------------------------------------------
# 1. Dead letters of table ta while tb's request of the same batch is split
# ---------------------------------------------------------------------------
#
# ta's requests are answered 400 (dead letters), tb's first one 413.  A
# large transaction keeps the worker shipping from inside decoding, where
# the split halves are prepared before the dead letters are written: a dead
# letter that shared its request with the batch found another request in
# its place.
{
	reload_with(batch_max_bytes => '2kB', max_inflight => 1);
	$sink->set_behaviour({
		default => { status => 204 },
		paths => { '/t/public/ta' => { status => 400, body => 'table ta is refused' } },
		script => [ { status => 413 } ] });
	my $mark = $sink->last_seq;
	$node->safe_psql('postgres', q{
INSERT INTO ta (payload) SELECT repeat('a', 60) || i FROM generate_series(1, 10) i;
BEGIN;
INSERT INTO ta (payload) SELECT repeat('a', 60) || i FROM generate_series(1, 200) i;
INSERT INTO tb (payload) SELECT repeat('b', 60) || i FROM generate_series(1, 200) i;
COMMIT;
});
	my $c = committed_changes();
	my @ta = grep { table_of($_) eq 'ta' } @$c;
	my @tb = grep { table_of($_) eq 'tb' } @$c;
	is(scalar(@ta), 210, 'dead letters: 210 changes of ta committed');
	is(scalar(@tb), 200, 'dead letters: 200 changes of tb committed');
	wait_confirmed_past('dead letters', $c);

	my $r = [ $sink->requests(since => $mark) ];
	ok((grep { ($_->{status} // 0) == 413 && $_->{path} eq '/t/public/tb' } @$r),
		'dead letters: a request of tb was answered 413');

	my $rows = $node->safe_psql('postgres', q{
SELECT json_agg(json_build_object('endpoint', endpoint, 'body', convert_from(body, 'UTF8'),
  'http_status', http_status) ORDER BY id)
FROM walship.dead_letter});
	my $dl = $json->decode($rows);
	ok(@$dl >= 1, 'dead letters: rejected requests were set aside (' . scalar(@$dl) . ' rows)');
	my ($wrong_endpoint, $wrong_body, %dead) = (0, 0);
	for my $row (@$dl)
	{
		$wrong_endpoint++ unless $row->{endpoint} =~ m{/t/public/ta$};
		for my $change (parse_ndjson($row->{body}))
		{
			$wrong_body++ unless table_of($change) eq 'ta';
			$dead{ $change->{id} }++;
		}
	}
	is($wrong_endpoint, 0, "dead letters: every row's endpoint is ta's");
	is($wrong_body, 0, "dead letters: every row's body holds only ta's changes");
	is(scalar(grep { !$dead{ $_->{id} } } @ta), 0,
		'dead letters: every change of ta is in a dead letter');
	is(scalar(grep { $_ > 1 } values %dead), 0,
		'dead letters: no change of ta is in two dead letters');
	my $acked = acked_ids_by_table();
	is(scalar(grep { !$acked->{tb}{ $_->{id} } } @tb), 0,
		'dead letters: every change of tb was acknowledged');
	is($node->safe_psql('postgres', q{SELECT state FROM walship.status}), 'streaming',
		'dead letters: still streaming');
	$node->safe_psql('postgres', 'TRUNCATE walship.dead_letter');
	reload_with(batch_max_bytes => undef, max_inflight => undef);
	$sink->set_behaviour({ default => { status => 204 } });
}

# ---------------------------------------------------------------------------
# 1b. A batch regrouped after a dead letter: ta's request of a batch is
#     rejected (dead letter) while tb's waits for a retry; walship.endpoint
#     then loses its placeholders, so the batch is prepared anew as one
#     request.  That request leaves out ta's dead-lettered lines.
# ---------------------------------------------------------------------------
{
	$sink->set_behaviour({
		default => { status => 204 },
		paths => {
			'/t/public/ta' => { status => 400, body => 'table ta is refused' },
			'/t/public/tb' => { status => 503, body => 'tb is busy' } } });
	my $mark = $sink->last_seq;
	$node->safe_psql('postgres', q{
BEGIN;
INSERT INTO ta (payload) VALUES ('regroup-a');
INSERT INTO tb (payload) VALUES ('regroup-b');
COMMIT;
});
	my $c = committed_changes();
	is(scalar(@$c), 2, 'regroup: two changes committed');
	ok( $sink->wait_for(
			sub {
				my @r = grep { $_->{seq} > $mark } @{ $_[0] };
				(grep { ($_->{status} // 0) == 400 && $_->{path} eq '/t/public/ta' } @r)
				  && (grep { ($_->{status} // 0) == 503 && $_->{path} eq '/t/public/tb' } @r);
			}, 30),
		'regroup: ta rejected, tb waits for a retry');
	ok($node->poll_query_until('postgres', 'SELECT count(*) = 1 FROM walship.dead_letter'),
		'regroup: ta in walship.dead_letter');

	my $all_mark = $sink->last_seq;
	reload_with(endpoint => $sink->url('/all'));
	wait_confirmed_past('regroup', $c);
	my @all = grep { $_->{path} eq '/all' } $sink->requests(since => $all_mark);
	ok(@all >= 1, 'regroup: the batch went to the new endpoint as one request');
	my %tables;
	for my $r (@all)
	{
		$tables{ table_of($_) }++ for body_changes($sink, $r->{seq});
	}
	is($tables{tb}, 1, "regroup: tb's line was sent");
	ok(!$tables{ta}, "regroup: ta's dead-lettered line was not sent again");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM walship.dead_letter'), '1',
		'regroup: one dead letter');

	$node->safe_psql('postgres', 'TRUNCATE walship.dead_letter');
	reload_with(endpoint => $sink->url($template));
	$sink->set_behaviour({ default => { status => 204 } });
}

# ---------------------------------------------------------------------------
# 2. walship.endpoint changed by reload while a batch is failing
# ---------------------------------------------------------------------------
{
	my $sink_b = WalshipHttpSink->new(dir => "$tmp/sink_b",
		behaviour => { default => { status => 204 } });
	$sink->set_behaviour({ default => { status => 503, body => 'down for good' } });
	my $mark = $sink->last_seq;
	$node->safe_psql('postgres', q{INSERT INTO tb (payload) VALUES ('moving')});
	my $c = committed_changes();
	is(scalar(@$c), 1, 'endpoint reload: one change committed');
	ok($sink->wait_for(sub { (grep { $_->{seq} > $mark } @{ $_[0] }) >= 2 }, 30),
		'endpoint reload: the first endpoint failed the batch twice');

	reload_with(endpoint => $sink_b->url($template));
	ok($sink_b->wait_for(sub { acked_ids_by_table($sink_b)->{tb}{ $c->[0]{id} } }, 20),
		'endpoint reload: the pending batch arrives at the new endpoint');
	my ($r) = $sink_b->requests;
	is($r->{path}, '/t/public/tb', 'endpoint reload: with the placeholders filled in');
	wait_confirmed_past('endpoint reload', $c);

	reload_with(endpoint => $sink->url($template));
	$sink->set_behaviour({ default => { status => 204 } });
	$sink_b->stop;
}

# ---------------------------------------------------------------------------
# 3. Retry-After and the backoff state
# ---------------------------------------------------------------------------

# 3a. Retry-After beyond walship.retry_max_delay waits retry_max_delay
{
	reload_with(retry_max_delay => '2s');
	my $mark = $sink->last_seq;
	$sink->set_behaviour({ default => { status => 204 },
		script => [ { status => 429, retry_after => 86400, body => 'come back tomorrow' } ] });
	$node->safe_psql('postgres', q{INSERT INTO tb (payload) VALUES ('tomorrow')});
	my $c = committed_changes();
	ok($sink->wait_for(sub { my @r = grep { $_->{seq} > $mark } @{ $_[0] }; @r >= 2 ? 1 : undef }, 15),
		'Retry-After cap: the batch was retried within 15 s');
	my @r = $sink->requests(since => $mark);
	if (@r >= 2)
	{
		is($r[0]{status}, 429, 'Retry-After cap: first answer 429');
		my $gap = $r[1]{t_received} - $r[0]{t_answered};
		ok($gap >= 1.0 && $gap < 3.5,
			sprintf('Retry-After cap: retried after retry_max_delay (%.2f s), not a day', $gap));
	}
	wait_confirmed_past('Retry-After cap', $c);
	reload_with(retry_max_delay => undef);
}

# 3b. While a Retry-After lasts, no request goes to the endpoint, and the
# state is backoff
{
	reload_with(retry_max_delay => '10s');
	my $script = "$tmp/workload.sql";
	PostgreSQL::Test::Utils::append_to_file($script,
		"INSERT INTO ta (payload) VALUES ('workload');\n");
	my $w = start_workload($node, $tmp, '-f', $script, '-R', '40', '-T', '30');
	ok($sink->wait_for(sub { (grep { is_2xx($_) && $_->{path} eq '/t/public/ta' } @{ $_[0] }) >= 5 }, 30),
		'Retry-After window: the workload is being shipped');

	my $mark = $sink->last_seq;
	$sink->set_behaviour({ default => { status => 204 },
		script => [ { status => 429, retry_after => 3, body => 'slow down' } ] });
	my $first = $sink->wait_for(sub { (grep { ($_->{status} // 0) == 429 && $_->{seq} > $mark } @{ $_[0] })[0] }, 30);
	ok($first, 'Retry-After window: 429 answered');

	# the state while the window lasts
	my ($polls, $backoff) = (0, 0);
	while ($first && time < $first->{t_answered} + 2.5)
	{
		my $state = $node->safe_psql('postgres', 'SELECT state FROM walship.status');
		$polls++;
		$backoff++ if $state eq 'backoff';
		sleep 0.1;
	}
	ok($polls >= 3, "Retry-After window: state polled $polls times");
	is($backoff, $polls, 'Retry-After window: state backoff all along');

	# requests the worker started after it saw the 429 and before the window ends
	ok($sink->wait_for(sub { (grep { $_->{seq} > $first->{seq} && is_2xx($_) } @{ $_[0] }) >= 2 }, 30),
		'Retry-After window: shipping resumed after it');
	my @inside = grep {
		$_->{t_received} > $first->{t_answered} + 0.3
		  && $_->{t_received} < $first->{t_answered} + 2.7
	} $sink->requests(since => $first->{seq});
	is(scalar(@inside), 0, 'Retry-After window: no request reached the endpoint during it')
	  or diag(join(' ', map { sprintf('%.2f', $_->{t_received} - $first->{t_answered}) } @inside));
	ok($node->poll_query_until('postgres', q{SELECT state = 'streaming' FROM walship.status}),
		'Retry-After window: streaming again afterwards');
	stop_workload($w);
	committed_changes();
	reload_with(retry_max_delay => undef);
}

# 3c. One table's requests fail while another's are acknowledged: backoff
{
	my $mark = $sink->last_seq;
	$sink->set_behaviour({ default => { status => 204 },
		paths => { '/t/public/tb' => { status => 503, body => 'tb is down' } } });
	$node->safe_psql('postgres', q{INSERT INTO tb (payload) VALUES ('parked')});
	ok($sink->wait_for(sub { (grep { $_->{seq} > $mark && ($_->{status} // 0) == 503 } @{ $_[0] }) >= 1 }, 30),
		'backoff state: tb answered 503');
	my ($polls, $streaming) = (0, 0);
	for my $i (1 .. 20)
	{
		$node->safe_psql('postgres', "INSERT INTO ta (payload) VALUES ('meanwhile $i')");
		sleep 0.1;
		$polls++;
		$streaming++ if $node->safe_psql('postgres', 'SELECT state FROM walship.status') ne 'backoff';
	}
	ok($sink->wait_for(sub { (grep { $_->{seq} > $mark && is_2xx($_) && $_->{path} eq '/t/public/ta' } @{ $_[0] }) >= 10 }, 30),
		'backoff state: ta acknowledged meanwhile');
	is($streaming, 0, "backoff state: state backoff in all $polls polls while tb waits");
	$sink->set_behaviour({ default => { status => 204 } });
	my $c = committed_changes();
	wait_confirmed_past('backoff state', $c);
	ok($node->poll_query_until('postgres', q{SELECT state = 'streaming' FROM walship.status}),
		'backoff state: streaming once tb is acknowledged');
}

# ---------------------------------------------------------------------------
# 4. Dot segments and slashes in {table}
# ---------------------------------------------------------------------------
{
	my $mark = $sink->last_seq;
	$node->safe_psql('postgres', q{
INSERT INTO ".." VALUES (1);
INSERT INTO "." VALUES (2);
INSERT INTO "a/b" VALUES (3);
});
	my $c = committed_changes();
	is(scalar(@$c), 3, 'path segments: 3 changes committed');
	wait_confirmed_past('path segments', $c);
	my %path_of;
	for my $r (grep { is_2xx($_) } $sink->requests(since => $mark))
	{
		$path_of{ table_of($_) } = $r->{path} for body_changes($sink, $r->{seq});
	}
	is($path_of{'..'}, '/t/public/%2E%2E', 'path segments: ".." is encoded');
	is($path_of{'.'}, '/t/public/%2E', 'path segments: "." is encoded');
	is($path_of{'a/b'}, '/t/public/a%2Fb', 'path segments: "a/b" is one segment');
}

$node->stop;
$sink->stop;

done_testing();
