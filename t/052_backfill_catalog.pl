# Copyright (c) walship developers
#
# t/052_backfill_catalog.pl
#	  A backfill read right after decoding old WAL, against the Python sink:
#
#	  1. The worker is paused while a published table gets a change, an
#	     unpublished table two million rows, and the published table a new
#	     column (ALTER TABLE ... ADD COLUMN w int DEFAULT 42); then the
#	     table is backfilled and the worker resumed.  Decoding the old WAL
#	     fills the worker's catalog caches under historic snapshots, as of
#	     before the ALTER; the backfill must read the table as it is now:
#	     every backfilled row has w = 42, and the backfill does not fail.
#	     The changes made before the ALTER go out without w, as they were,
#	     also those decoded after the first chunk was read (the read's
#	     catalog entries must not leak into decoding either).
#	     Likewise a table added to the publication while paused is
#	     backfilled, not refused as no longer published.
#	  2. walship.backfill_chunk_timeout: a backfill whose condition sleeps
#	     for every row (pg_sleep) is read in chunks cut short by the timeout,
#	     and finishes with every row; meanwhile live changes reach the sink
#	     within a bound, measured from their commit to their arrival.  A
#	     backfill whose first row takes longer than the timeout fails (after
#	     three tries), saying so.

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

my $tmp = abs_path(PostgreSQL::Test::Utils::tempdir('backfill_catalog'));
my $sink = WalshipHttpSink->new(dir => "$tmp/sink");
$sink->set_behaviour({ default => { status => 204 } });

my $node = worker_node('backfill_catalog', qq{
shared_buffers = 128MB
walship.database = 'postgres'
# only the backfills this test queues: the rows of r14 are counted
walship.initial_backfill = off
walship.publication = 'wpub'
walship.endpoint = '${\ $sink->url('/ingest/{schema}/{table}') }'
walship.format = 'ndjson'
walship.ndjson_shape = 'flat'
walship.batch_max_delay = 20ms
walship.retry_min_delay = 20ms
walship.retry_max_delay = 500ms
walship.backfill_chunk_timeout = 300ms
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION walship;
CREATE TABLE r14 (id int PRIMARY KEY, v text);
INSERT INTO r14 SELECT g, 'v' || g FROM generate_series(1, 1000) g;
CREATE TABLE unpublished (id int, v text);
CREATE TABLE r16 (id int PRIMARY KEY, v text);
INSERT INTO r16 SELECT g, 'v' || g FROM generate_series(1, 100) g;
CREATE PUBLICATION wpub FOR TABLE r14;
});
ok(wait_streaming($node), 'worker streams');

# The acknowledged lines of table $table.
sub table_lines
{
	my ($table) = @_;
	return map { parse_ndjson($sink->body($_->{seq})) }
	  grep { is_2xx($_) && $_->{path} =~ m{/ingest/public/\Q$table\E$} }
	  $sink->requests;
}

# ---------------------------------------------------------------------------
# 1. Old WAL decoded, then a backfill of the table as it is now
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', 'SELECT walship.pause()');
ok($node->poll_query_until('postgres', q{SELECT state = 'paused' FROM walship.status}),
	'worker paused');

$node->safe_psql('postgres',
	q{INSERT INTO r14 SELECT g, 'paused' || g FROM generate_series(1001, 1005) g});
$node->safe_psql('postgres',
	q{INSERT INTO unpublished SELECT g, 'x' FROM generate_series(1, 2000000) g});
$node->safe_psql('postgres',
	q{INSERT INTO r14 SELECT g, 'paused' || g FROM generate_series(1006, 1010) g});
$node->safe_psql('postgres', 'ALTER TABLE r14 ADD COLUMN w int DEFAULT 42');
my $job = $node->safe_psql('postgres', q{SELECT walship.backfill('r14', 100)});
my $end = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
$node->safe_psql('postgres', 'SELECT walship.resume()');

ok( $node->poll_query_until('postgres',
		"SELECT state IN ('done', 'failed') FROM walship.backfills WHERE id = $job"),
	'backfill ended');
is( $node->safe_psql('postgres',
		"SELECT state || ' ' || coalesce(error, '') FROM walship.backfills WHERE id = $job"),
	'done ', 'backfill done, without error');
ok(wait_worker_caught_up($node, $end), 'worker caught up');

my @lines = table_lines('r14');
my @read = grep { $_->{_op} eq 'r' } @lines;
my %read_ids = map { $_->{id} => 1 } @read;
is(scalar(keys %read_ids), 1010, 'every row backfilled');
my @without_w = grep { !defined $_->{w} || $_->{w} != 42 } @read;
is(scalar(@without_w), 0, 'every backfilled row has w = 42')
  or diag(sprintf('%d backfilled rows without w = 42, first ids %s',
		scalar(@without_w),
		join(', ', map { $_->{id} } @without_w[0 .. ($#without_w < 4 ? $#without_w : 4)])));

my @inserted = grep { $_->{_op} eq 'c' } @lines;
is(scalar(@inserted), 10, 'the ten inserts made while paused were shipped');
is(scalar(grep { exists $_->{w} } @inserted), 0,
	'they were decoded as the table was before the ALTER');

# the same with a table added to the publication: decoding last saw it
# unpublished
$node->safe_psql('postgres', 'SELECT walship.pause()');
ok($node->poll_query_until('postgres', q{SELECT state = 'paused' FROM walship.status}),
	'worker paused again');
$node->safe_psql('postgres', q{UPDATE r16 SET v = 'unpublished' WHERE id = 1});
$node->safe_psql('postgres', q{INSERT INTO unpublished SELECT g, 'y' FROM generate_series(1, 2000000) g});
$node->safe_psql('postgres', 'ALTER PUBLICATION wpub ADD TABLE r16');
$job = $node->safe_psql('postgres', q{SELECT walship.backfill('r16', 30)});
$node->safe_psql('postgres', 'SELECT walship.resume()');
ok( $node->poll_query_until('postgres',
		"SELECT state IN ('done', 'failed') FROM walship.backfills WHERE id = $job"),
	'backfill of the table added ended');
is( $node->safe_psql('postgres',
		"SELECT state || ' ' || coalesce(error, '') FROM walship.backfills WHERE id = $job"),
	'done ', 'the table added to the publication was backfilled, not refused');
ok( $sink->wait_for(sub {
		my %ids = map { $_->{id} => 1 } grep { $_->{_op} eq 'r' } table_lines('r16');
		return keys(%ids) == 100; }),
	'every row of the table added arrived');

# ---------------------------------------------------------------------------
# 2. A slow condition: chunks cut short, the stream stays fresh
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', q{
CREATE TABLE slow (id int PRIMARY KEY, v text);
INSERT INTO slow SELECT g, 's' || g FROM generate_series(1, 300) g;
CREATE TABLE live (id serial PRIMARY KEY, at double precision NOT NULL);
CREATE TABLE slower (id int PRIMARY KEY);
INSERT INTO slower VALUES (1), (2), (3);
ALTER PUBLICATION wpub ADD TABLE slow, live, slower;
});

# a change committed every 100 ms, stamped with its time
my $ticker_script = "$tmp/ticker.sql";
PostgreSQL::Test::Utils::append_to_file($ticker_script, q{
INSERT INTO live (at) VALUES (extract(epoch FROM clock_timestamp()));
\sleep 100 ms
});
my $ticker = start_workload($node, $tmp, '-c', 1, '-T', 2, '-f', $ticker_script);
ok($node->poll_query_until('postgres', 'SELECT count(*) > 5 FROM live'),
	'ticker runs');

# 300 rows of 30 ms each: 9 s in one chunk of 1000 rows without a timeout
my $slow_job = $node->safe_psql('postgres',
	q{SELECT walship.backfill('slow', 1000, $$pg_sleep(0.03)::text = ''$$)});
ok( $node->poll_query_until('postgres',
		"SELECT state IN ('done', 'failed') FROM walship.backfills WHERE id = $slow_job"),
	'slow backfill ended');
my $live_end = $node->safe_psql('postgres',
	'SELECT extract(epoch FROM clock_timestamp())');
stop_workload($ticker);
$end = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
ok(wait_worker_caught_up($node, $end), 'worker caught up after the slow backfill');

is( $node->safe_psql('postgres',
		"SELECT state || ' ' || coalesce(error, '') || ' ' || (chunks_done > 1) FROM walship.backfills WHERE id = $slow_job"),
	'done  true', 'slow backfill done, in chunks cut short');
my %slow_ids = map { $_->{id} => 1 } grep { $_->{_op} eq 'r' } table_lines('slow');
is(scalar(keys %slow_ids), 300, 'every row of the slow backfill arrived');

# freshness: from a live change's commit to the arrival of its batch
my $max_lag = 0;
my $during = 0;
for my $r (grep { is_2xx($_) && $_->{path} =~ m{/ingest/public/live$} } $sink->requests)
{
	for my $line (parse_ndjson($sink->body($r->{seq})))
	{
		next if $line->{at} > $live_end;
		my $lag = $r->{t_received} - $line->{at};
		$max_lag = $lag if $lag > $max_lag;
		$during++;
	}
}
cmp_ok($during, '>', 20, 'live changes arrived while the slow backfill ran');
diag(sprintf('slowest live change during the slow backfill: %.2f s', $max_lag));
cmp_ok($max_lag, '<', 3, 'live changes arrived within 3 s of their commit')
  or diag("slowest live change arrived after ${max_lag} s");

# a first row slower than the timeout fails the backfill, saying why
my $slower_job = $node->safe_psql('postgres',
	q{SELECT walship.backfill('slower', 10, $$pg_sleep(0.5)::text = ''$$)});
ok( $node->poll_query_until('postgres',
		"SELECT state IN ('done', 'failed') FROM walship.backfills WHERE id = $slower_job"),
	'slower backfill ended');
is( $node->safe_psql('postgres',
		"SELECT state || ': ' || error FROM walship.backfills WHERE id = $slower_job"),
	'failed: reading table "public.slower" found no row within walship.backfill_chunk_timeout (300 ms)',
	'a backfill whose first row takes longer than the timeout fails');
ok(wait_streaming($node), 'the worker goes on');

$node->stop;
done_testing();
