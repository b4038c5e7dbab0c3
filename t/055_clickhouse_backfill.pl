# Copyright (c) walship developers
#
# t/055_clickhouse_backfill.pl
#	  A backfill into a real ClickHouse (Debian's clickhouse-server 18.16,
#	  started by the test through t/WalshipClickHouse.pm): the check of
#	  t/050_backfill.pl part 1, with ClickHouse's ReplacingMergeTree(_version)
#	  doing the merge by _version instead of the test.
#
#	  A 200,000-row `items` table exists before the pipeline does (its rows
#	  are in no change the worker decodes).  The worker ships the flat ndjson
#	  shape, ClickHouse dialect, gzip, through walship.endpoint with a
#	  {table} placeholder, into the table walship.clickhouse_ddl() prints.
#	  walship.backfill('items', 1000) runs while pgbench (5 clients):
#	  - updates two rows anywhere in the table in transactions that stay
#	    open across 10 ms, deletes rows, inserts new keys and upserts, and
#	    moves rows to new keys both ahead of the backfill (past the end of
#	    the table) and behind it (negative keys);
#	  - updates, in transactions that stay open across 20 ms, one row of
#	    each of the 64 chunks after the backfill's last acknowledged key,
#	    so that chunks are read while transactions that changed some of
#	    their rows are still running.
#	  The worker is killed with SIGKILL once, when 40% of the rows are
#	  acknowledged; the postmaster restarts it and the backfill resumes.
#	  Once the backfill is 'done' and the worker has caught up:
#	  - ClickHouse's `FINAL WHERE NOT _deleted` has the row count of the
#	    PostgreSQL table, and every row (id, grp, val, n) is equal: both
#	    dumped in key order and compared line by line (on failure: the
#	    counts of missing, extra and differing rows, the first ten keys
#	    with every version ClickHouse still holds of them, and the _op of
#	    the winning lines of the differing rows);
#	  - read lines (_op = 'r') arrived, most rows are still their read
#	    line, and the workload's inserts, updates, deletes and key changes
#	    arrived too;
#	  - no batch was rejected, the worker logged no error.
#	  It takes about 18 s (the backfill about 7 s) on 2 CPUs.
#
#	  That the test can fail was checked with a copy of src/backfill.c
#	  whose ws_backfill_step() sets chunk->nxids = 0 before its wait loop
#	  (plain DBLog: the high watermark is written without waiting for the
#	  transactions that were running when the chunk was read), built and
#	  installed in a private copy of the PostgreSQL installation: the row
#	  comparison failed in 3 runs out of 3, with 183, 214 and 232 rows that
#	  differ, each one's winning line a read line (a transaction updated the
#	  row before the low watermark and committed after the high one, so its
#	  change has a _version below the chunk's and loses to the stale read
#	  line).  Every other assertion passed.
#
#	  Skipped only when clickhouse-server is not installed (test/run-all.sh
#	  installs it).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use Cwd qw(abs_path);
use Time::HiRes qw(time sleep);
use WalshipClickHouse;
use WalshipTest;

my ($available, $why) = WalshipClickHouse->available;
plan skip_all => "clickhouse-server is not installed: $why" unless $available;

my $rows = 200_000;
my $chunk_size = 1000;

my $t_begin = time;
my $tmp = abs_path(PostgreSQL::Test::Utils::tempdir('clickhouse_backfill'));
my $ch = WalshipClickHouse->new(dir => "$tmp/ch", no_tcp => 1);
note(sprintf('clickhouse-server %s ready in %.1f s', $ch->version, $ch->startup_seconds));

$ch->query('CREATE DATABASE analytics');

my $node = worker_node('clickhouse_backfill', qq{
max_connections = 30
shared_buffers = 128MB
# kill -9 of the worker makes the postmaster reinitialize; keep it running
restart_after_crash = on
walship.database = 'postgres'
walship.publication = 'wpub'
walship.endpoint = '${\ $ch->insert_url('analytics.{table}') }'
walship.format = 'ndjson'
walship.ndjson_shape = 'flat'
walship.dialect = 'clickhouse_18'
walship.compression = 'gzip'
walship.batch_max_changes = 5000
walship.batch_max_delay = 50ms
walship.max_inflight = 4
walship.retry_min_delay = 20ms
walship.retry_max_delay = 500ms
});
$node->start;

# The table and its rows first: the pipeline (publication, extension, slot)
# comes later, so only the backfill can bring these rows to ClickHouse.
$node->safe_psql('postgres', qq{
CREATE TABLE items (id bigint PRIMARY KEY, grp int NOT NULL, val text, n bigint NOT NULL);
INSERT INTO items SELECT g, g % 97, md5(g::text), 0 FROM generate_series(1, $rows) g;
VACUUM ANALYZE items;
});
$node->safe_psql('postgres', q{
CREATE PUBLICATION wpub FOR TABLE items;
CREATE EXTENSION walship;
});

my $ddl = $node->safe_psql('postgres',
	q{SELECT walship.clickhouse_ddl('items', 'analytics', 'clickhouse_18')});
like($ddl, qr/ENGINE = ReplacingMergeTree\(_version\)\nORDER BY \(`id`\)/,
	'ClickHouse DDL: ReplacingMergeTree(_version) ordered by the key');
$ch->query($ddl);

ok(wait_streaming($node), 'worker streams to ClickHouse');
is($ch->query_value('SELECT count() FROM analytics.items'), '0',
	'the rows that predate the pipeline are not in ClickHouse');

# ---------------------------------------------------------------------------
# Workload: pgbench in a loop (a crash restart ends a run, the loop starts
# another).
#   mixed.sql, anywhere in the table: two-row update transactions open
#     across 10 ms, deletes, inserts of new keys (over 200000) and upserts,
#     key changes ahead of the backfill (to keys over 440000) and behind it
#     (negative keys);
#   hot.sql: update transactions open across 20 ms, each on one row of each
#     of the 64 chunks after the backfill's last acknowledged key (the
#     worker reads a few chunks ahead of it, acknowledgements lag).
# ---------------------------------------------------------------------------
my $top = $rows + 20000;
my %scripts = (
	'mixed.sql@3' => qq{\\set id random(1, $top)
\\set d random(1, $rows)
\\set r random(1, 100)
BEGIN;
UPDATE items SET val = md5(random()::text), n = n + 1 WHERE id = :id;
\\sleep 10 ms
UPDATE items SET n = n + 1 WHERE id = :id + 7;
END;
DELETE FROM items WHERE id = :d AND :r <= 20;
INSERT INTO items VALUES ($rows + :r * 1000 + :d % 1000, :r, 'new', 0)
  ON CONFLICT (id) DO UPDATE SET n = items.n + 1, val = 'again';
UPDATE items SET id = id + 2 * $top WHERE id = :d + 1 AND :r > 90;
UPDATE items SET id = -id WHERE id = :d + 3 AND :r <= 5;
},
	'hot.sql@2' => qq{SELECT coalesce(max(last_key[1]::bigint), 0) AS pos
  FROM walship.backfills WHERE state = 'running' \\gset
\\set off random(1, $chunk_size)
BEGIN;
UPDATE items SET val = md5(random()::text), n = n + 1
 WHERE id IN (SELECT :pos + :off + g * $chunk_size FROM generate_series(0, 63) g);
\\sleep 20 ms
END;
},
);
my @pgbench_files;
foreach my $name (sort keys %scripts)
{
	my ($file) = $name =~ /^([^@]+)/;
	PostgreSQL::Test::Utils::append_to_file("$tmp/$file", $scripts{$name});
	push @pgbench_files, '-f', "$tmp/$name";
}
my $workload = start_workload($node, $tmp,
	'-c', 5, '-T', 5, '--max-tries=50', @pgbench_files);
sleep 1;	# let the workload reach its pace

sub backfill_row
{
	my ($id, $cols) = @_;
	return $node->safe_psql('postgres',
		"SELECT $cols FROM walship.backfills WHERE id = $id");
}

my $t_backfill = time;
my $job = $node->safe_psql('postgres',
	"SELECT walship.backfill('items', $chunk_size)");
ok($job =~ /^\d+$/, "backfill of items queued (id $job)");

# kill -9 of the worker once a good part is acknowledged
ok( poll_until(
		$node,
		"SELECT rows_sent >= $rows * 0.4 FROM walship.backfills WHERE id = $job"),
	'backfill ships chunks while the workload runs');
my $victim = worker_pid($node);
my $sent_before = backfill_row($job, 'rows_sent');
kill_worker($victim, " after $sent_before rows");
ok(wait_for_new_worker($node, $victim), 'after the crash restart a new worker streams');
is(backfill_row($job, 'state'), 'running', 'the backfill is still running after kill -9');

ok( poll_until(
		$node,
		"SELECT state = 'done' FROM walship.backfills WHERE id = $job", 120),
	'backfill of items finishes')
  or diag($node->safe_psql('postgres', 'SELECT * FROM walship.backfills'));
my $backfill_seconds = time - $t_backfill;
stop_workload($workload);
my ($chunks, $sent) = split /\|/, backfill_row($job, 'chunks_done, rows_sent');
is(backfill_row($job, 'error IS NULL AND finished_at IS NOT NULL'), 't',
	'no error, finished_at set');

my $end_lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
my $t_wait = time;
ok(wait_worker_caught_up($node, $end_lsn),
	"caught up: everything up to $end_lsn acknowledged")
  or diag($node->safe_psql('postgres', 'SELECT * FROM walship.status'));
note(sprintf('caught up %.1f s after the workload stopped', time - $t_wait));

is($node->safe_psql('postgres',
		q{SELECT rejected_batches || ' ' || coalesce(last_error, '') FROM walship.status}),
	'0 ', 'no batch rejected by ClickHouse, no error');

# ---------------------------------------------------------------------------
# ClickHouse equals PostgreSQL
# ---------------------------------------------------------------------------
my $final = 'FROM analytics.items FINAL WHERE NOT _deleted';
my $pg_rows = $node->safe_psql('postgres', 'SELECT count(*) FROM items');
my $ch_rows = $ch->query_value("SELECT count() $final");
is($ch_rows, $pg_rows, "row count: ClickHouse (FINAL, not deleted) = PostgreSQL ($pg_rows)");

# every row, in key order, as tab-separated text (no value needs escaping)
my @pg_lines = split /\n/, $node->safe_psql('postgres',
	q{COPY (SELECT id, grp, val, n FROM items ORDER BY id) TO STDOUT});
my @ch_lines = split /\n/, $ch->query("SELECT id, grp, val, n $final ORDER BY id FORMAT TSV");
my (%pg, %chv);
for (@pg_lines) { my ($k) = /^(-?\d+)\t/; $pg{$k} = $_; }
for (@ch_lines) { my ($k) = /^(-?\d+)\t/; $chv{$k} = $_; }
my (@only_pg, @only_ch, @differ);
for my $k (sort { $a <=> $b } keys %pg)
{
	if (!exists $chv{$k}) { push @only_pg, $k; }
	elsif ($chv{$k} ne $pg{$k}) { push @differ, $k; }
}
@only_ch = sort { $a <=> $b } grep { !exists $pg{$_} } keys %chv;
my $ndiff = @only_pg + @only_ch + @differ;
ok($ndiff == 0 && @pg_lines == @ch_lines,
	sprintf('every row (id, grp, val, n) equal, %d rows compared', scalar(@pg_lines)))
  or do
{
	diag(sprintf('%d rows only in PostgreSQL, %d only in ClickHouse, %d rows differ',
			scalar(@only_pg), scalar(@only_ch), scalar(@differ)));
	my @keys = (@differ, @only_pg, @only_ch);
	splice(@keys, 10) if @keys > 10;
	for my $k (@keys)
	{
		diag("key $k: PostgreSQL: " . ($pg{$k} // '(none)')
			  . ' / ClickHouse: ' . ($chv{$k} // '(none)'));
		diag('  ClickHouse holds (what merges left): ' . $_)
		  for split /\n/, $ch->query(
			"SELECT id, grp, val, n, _op, _version, _deleted FROM analytics.items "
			  . "WHERE id = $k ORDER BY _version FORMAT TSV");
	}
	if (@differ)
	{
		my $in = join(', ', @differ);
		diag('winning line of the differing rows by _op: ' . join(', ', split /\n/,
				$ch->query("SELECT concat(_op, ' ', toString(count())) $final AND id IN ($in) "
					  . 'GROUP BY _op ORDER BY _op FORMAT TSV')));
	}
};

# read lines, and the changes of the workload
my ($reads, $changes) = split /\t/, $ch->query(
	"SELECT countIf(_op = 'r'), countIf(_op <> 'r') FROM analytics.items FORMAT TSV");
chomp $changes;
my $final_reads = $ch->query_value("SELECT count() $final AND _op = 'r'");
cmp_ok($reads, '>=', $rows * 0.5, "read lines arrived ($reads)");
cmp_ok($final_reads, '>=', $rows * 0.5,
	"most rows are still their backfilled read line ($final_reads)");
cmp_ok($changes, '>', 1000, "the workload's changes arrived ($changes change lines)");
is($ch->query_value("SELECT countIf(_op = 'u') > 0 AND countIf(_op = 'c') > 0 "
	  . "AND countIf(_op = 'd') > 0 AND countIf(id < 0) > 0 AND countIf(id > 2 * $top) > 0 "
	  . 'FROM analytics.items'),
	'1', 'updates, inserts, deletes and key changes both ways arrived');

# the crash was ours, and nothing else went wrong
my $log = slurp_file($node->logfile);
is(worker_sigkills($log), 1, 'the log shows the SIGKILL of the worker');
is(join("\n", worker_errors($log)), '', 'the worker logged no ERROR, FATAL or PANIC');

diag(sprintf('ClickHouse backfill: %d rows under load, one kill -9: %.1f s, %d chunks, '
	  . '%d rows sent; ClickHouse holds %d read and %d change lines (what merges left), '
	  . '%d rows with FINAL, %d of them read lines; whole test %.1f s',
	$rows, $backfill_seconds, $chunks, $sent, $reads, $changes, $ch_rows,
	$final_reads, time - $t_begin));

$node->stop;
$ch->stop;
done_testing();
