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
walship.publication = 'wpub'
walship.endpoint = '${\ $sink->url('/ingest/{schema}/{table}') }'
walship.format = 'ndjson'
walship.ndjson_shape = 'flat'
walship.batch_max_delay = 20ms
walship.retry_min_delay = 20ms
walship.retry_max_delay = 500ms
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION walship;
CREATE TABLE r14 (id int PRIMARY KEY, v text);
INSERT INTO r14 SELECT g, 'v' || g FROM generate_series(1, 1000) g;
CREATE TABLE unpublished (id int, v text);
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

$node->stop;
done_testing();
