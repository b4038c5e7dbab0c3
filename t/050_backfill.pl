# Copyright (c) walship developers
#
# t/050_backfill.pl
#	  Backfills shipped by the worker, against the Python sink:
#
#	  1. A 1,000,000-row table is backfilled while pgbench updates, deletes,
#	     inserts and re-keys its rows (some in transactions that stay open
#	     across chunks), and the worker is killed with kill -9 midway.  The
#	     backfill resumes and finishes; applying every acknowledged line of
#	     the flat NDJSON shape by _version (the newest line of each key wins,
#	     as in a ClickHouse ReplacingMergeTree) gives exactly the table.
#	  2. A WHERE condition; the binary format's READ records; a partitioned
#	     table published through its root, and a table keyed by REPLICA
#	     IDENTITY USING INDEX, both under a workload.
#	  3. A transaction left open holds a chunk back, not the stream; the
#	     rate limit (walship.backfill_max_rate), cancel, a clean restart of
#	     the server mid-backfill, and a table dropped mid-backfill.
#	  4. walship.initial_backfill on a new pipeline.
#
#	  Rows per second are printed as diag lines; bench/backfill_bench.sh
#	  measures them properly.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use Cwd qw(abs_path);
use Digest::MD5 qw(md5_hex);
use IPC::Run;
use Time::HiRes qw(time sleep);
use WalshipHttpSink;
use WalshipTest;

my $rows = 1_000_000;

my $tmp = abs_path(PostgreSQL::Test::Utils::tempdir('backfill'));
my $sink = WalshipHttpSink->new(dir => "$tmp/sink");
$sink->set_behaviour({ default => { status => 204 } });

my $node = worker_node('backfill', qq{
max_connections = 30
shared_buffers = 128MB
restart_after_crash = on
walship.database = 'postgres'
# the backfills of this test are queued by hand and counted from id 1
walship.initial_backfill = off
walship.publication = 'wpub'
walship.endpoint = '${\ $sink->url('/ingest/{schema}/{table}') }'
walship.format = 'ndjson'
walship.ndjson_shape = 'flat'
walship.batch_max_changes = 5000
walship.batch_max_delay = 20ms
walship.max_inflight = 4
walship.retry_min_delay = 20ms
walship.retry_max_delay = 500ms
});
$node->start;

$node->safe_psql('postgres', qq{
CREATE EXTENSION walship;
CREATE TABLE items (id bigint PRIMARY KEY, grp int NOT NULL, val text, n bigint NOT NULL);
INSERT INTO items SELECT g, g % 97, md5(g::text), 0 FROM generate_series(1, $rows) g;
CREATE TABLE cond (id int PRIMARY KEY, v text);
INSERT INTO cond SELECT g, 'c' || g FROM generate_series(1, 1000) g;
CREATE TABLE bin (k text PRIMARY KEY, v int);
INSERT INTO bin VALUES ('a', 1), ('b', 2);
CREATE TABLE slow (id int PRIMARY KEY, v text);
INSERT INTO slow SELECT g, 's' || g FROM generate_series(1, 50000) g;
CREATE TABLE gone (id int PRIMARY KEY, v text);
CREATE TABLE resumed (id int PRIMARY KEY, v text);
CREATE TABLE wide (id int PRIMARY KEY, doc text);
INSERT INTO wide
SELECT g, (SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, 3200) i)
  FROM generate_series(1, 60) g;
INSERT INTO resumed SELECT g, 'r' || g FROM generate_series(1, 30000) g;
INSERT INTO gone SELECT g, 'g' || g FROM generate_series(1, 50000) g;
CREATE PUBLICATION wpub FOR TABLE items, cond, bin, slow, gone, resumed, wide;
VACUUM ANALYZE;
});
ok(wait_streaming($node), 'worker streams');


# The acknowledged request bodies for table $table (one request per table
# and batch), after request $since.
sub table_bodies
{
	my ($table, $since) = @_;
	return map { $sink->body($_->{seq}) }
	  grep { is_2xx($_) && $_->{path} =~ m{/ingest/public/\Q$table\E$} }
	  $sink->requests(since => $since // 0);
}

# The decoded lines of table_bodies().
sub table_lines { return map { parse_ndjson($_) } table_bodies(@_); }

# The acknowledged lines of table $table, one file, for COPY.
sub write_received
{
	my ($table, $file) = @_;
	open my $fh, '>', $file or die "$file: $!";
	print $fh $_ for table_bodies($table);
	close $fh;
	return;
}

sub backfill_row
{
	my ($id, $cols) = @_;
	return $node->safe_psql('postgres',
		"SELECT $cols FROM walship.backfills WHERE id = $id");
}

# ---------------------------------------------------------------------------
# 1. 1M rows under a concurrent workload, with kill -9
# ---------------------------------------------------------------------------
my $script = "$tmp/workload.sql";
PostgreSQL::Test::Utils::append_to_file($script, q{
\set id random(1, 1100000)
\set d random(1, 1000000)
\set r random(1, 100)
BEGIN;
UPDATE items SET val = md5(random()::text), n = n + 1 WHERE id = :id;
\sleep 10 ms
UPDATE items SET n = n + 1 WHERE id = :id + 7;
END;
DELETE FROM items WHERE id = :d AND :r <= 20;
INSERT INTO items VALUES (1000000 + :r * 1000 + :d % 1000, :r, 'new', 0)
  ON CONFLICT (id) DO UPDATE SET n = items.n + 1, val = 'again';
UPDATE items SET id = id + 2000000 WHERE id = :d + 1 AND :r > 90;
});
my $workload = start_workload($node, $tmp,
	'-c', 4, '-T', 5, '--max-tries=50', '-f', $script);

my $started = time;
my $items_job = $node->safe_psql('postgres',
	q{SELECT walship.backfill('items', 10000)});
is($items_job, '1', 'backfill of items queued');

# kill -9 of the worker once a good part is shipped
ok( poll_until(
		$node,
		"SELECT rows_sent >= 300000 FROM walship.backfills WHERE id = $items_job"),
	'backfill ships chunks while the workload runs');
my $victim = worker_pid($node);
my $sent_before = backfill_row($items_job, 'rows_sent');
kill_worker($victim, " after $sent_before rows");
ok(wait_for_new_worker($node, $victim), 'a new worker starts');
my $after_restart = backfill_row($items_job, 'state || \' \' || rows_sent');
like($after_restart, qr/^running \d+$/, "the backfill is still running after kill -9 ($after_restart)");

ok( poll_until(
		$node,
		"SELECT state = 'done' FROM walship.backfills WHERE id = $items_job", 300),
	'backfill of items finishes');
my $elapsed = time - $started;
stop_workload($workload);
my ($chunks, $sent) = split /\|/, backfill_row($items_job, 'chunks_done, rows_sent');
diag(sprintf('backfill of %d rows under load, with one kill -9: %.1f s, %d chunks, %d rows sent',
		$rows, $elapsed, $chunks, $sent));
cmp_ok($chunks, '>=', $rows / 10000, 'chunks_done counts every chunk');
is(backfill_row($items_job, 'last_key IS NOT NULL AND error IS NULL AND finished_at IS NOT NULL'),
	't', 'last_key and finished_at are set, no error');

my $end_lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_worker_caught_up($node, $end_lsn), 'worker caught up with the workload');

# Loads the acknowledged lines of $table into table "received", and applies
# them into table "applied" (columns $cols, typed by $table's row type): per
# key ($key), the line with the highest _version wins.  Returns the number
# of rows that differ between $table and the live rows of "applied".
sub apply_received
{
	my ($table, $key, $cols) = @_;
	write_received($table, "$tmp/received.ndjson");
	$node->safe_psql('postgres', qq{
DROP TABLE IF EXISTS received, applied;
CREATE TABLE received (line jsonb);
COPY received FROM '$tmp/received.ndjson' WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02');
CREATE TABLE applied AS
SELECT DISTINCT ON ($key) $cols, deleted
  FROM (SELECT r.*, (line->>'_deleted')::int = 1 AS deleted,
               (line->>'_version')::numeric AS version
          FROM received, jsonb_populate_record(NULL::$table, line) r) l
 ORDER BY $key, version DESC;
});
	my $differ = $node->safe_psql('postgres', qq{
CREATE TABLE differ AS
  (SELECT 'source' AS side, $cols FROM $table EXCEPT SELECT 'source', $cols FROM applied WHERE NOT deleted)
  UNION ALL
  (SELECT 'applied', $cols FROM applied WHERE NOT deleted EXCEPT SELECT 'applied', $cols FROM $table);
SELECT count(*) FROM differ});
	# on a difference, show the rows and every line received for their keys
	diag("rows that differ:\n"
		  . $node->safe_psql('postgres', 'SELECT * FROM differ ORDER BY 2, 1')
		  . "\nlines received for their keys:\n"
		  . $node->safe_psql('postgres', qq{
SELECT r.line FROM received r, jsonb_populate_record(NULL::$table, r.line) k
 WHERE ($key) IN (SELECT $key FROM differ)
 ORDER BY (r.line->>'_version')::numeric}))
	  if $differ ne '0';
	$node->safe_psql('postgres', 'DROP TABLE differ');
	return $differ;
}

# Apply what the receiver got: per key, the line with the highest _version.
my $differ = apply_received('items', 'id', 'id, grp, val, n');
my ($reads, $changes) = split /\|/, $node->safe_psql('postgres', q{
SELECT count(*) FILTER (WHERE line->>'_op' = 'r'), count(*) FILTER (WHERE line->>'_op' <> 'r')
  FROM received});
diag("received $reads read lines and $changes change lines for items");
cmp_ok($reads, '>=', $rows * 0.9, 'most rows arrive as read lines');
cmp_ok($changes, '>', 1000, 'the workload changed rows during the backfill');
is($differ, '0', 'applying the received lines by _version gives exactly the table');
is($node->safe_psql('postgres', q{SELECT count(*) FROM applied WHERE NOT deleted}),
	$node->safe_psql('postgres', q{SELECT count(*) FROM items}),
	'as many live rows as the table');

# ---------------------------------------------------------------------------
# 2. A WHERE condition; READ records in the binary format
# ---------------------------------------------------------------------------
my $since = $sink->last_seq;
my $cond_job = $node->safe_psql('postgres',
	q{SELECT walship.backfill('cond', 100, 'id % 10 = 0')});
ok(poll_until($node, "SELECT state = 'done' FROM walship.backfills WHERE id = $cond_job"),
	'backfill with a condition finishes');
my @cond = table_lines('cond', $since);
is(scalar(@cond), 100, 'only the rows matching the condition are sent');
is(scalar(grep { $_->{id} % 10 != 0 || $_->{_op} ne 'r' || $_->{v} ne "c$_->{id}" } @cond),
	0, 'each is a read line of a matching row');
is(backfill_row($cond_job, 'rows_sent || \'/\' || chunks_done'), '100/2',
	'rows_sent counts rows sent, chunks_done chunks read (a full one, an empty last one)');

# walship.batch_max_bytes is for the large rows below: set with this
# reload, which the binary batch proves the worker has taken, so that it is
# in force before that backfill starts
$node->append_conf('postgresql.conf', "walship.format = 'binary'\nwalship.endpoint = '${\ $sink->url('/ingest') }'\nwalship.batch_max_bytes = 64kB");
$node->reload;
$since = $sink->last_seq;
my $bin_job = $node->safe_psql('postgres', q{SELECT walship.backfill('bin')});
ok(poll_until($node, "SELECT state = 'done' FROM walship.backfills WHERE id = $bin_job"),
	'backfill in the binary format finishes');
my ($bin_body) = grep { /bin/ } $sink->bodies(since => $since, status => [ 200, 204 ]);
ok(defined $bin_body, 'a binary batch with the rows arrived');
my $hex = unpack('H*', $bin_body // '');
my $decoded = $node->safe_psql('postgres', qq{
SELECT string_agg(r->>'kind' || ':' || coalesce(r->>'relation', r->>'schema' || '.' || (r->>'table')) || ':' || coalesce(r->'new'->>'k', ''), ' ')
  FROM walship.decode_stream('\\x$hex') r});
is($decoded, 'relation:public.bin: read:public.bin:a read:public.bin:b',
	'the batch holds the RELATION record and a READ record per row');
is( $node->safe_psql('postgres', qq{
SELECT bool_and((r->>'version')::pg_lsn < (r->>'position')::pg_lsn AND r->>'read_time' IS NOT NULL)
  FROM walship.decode_stream('\\x$hex') r WHERE r->>'kind' = 'read'}),
	't', 'READ records carry a version below their position, and the read time');
$node->append_conf('postgresql.conf', "walship.format = 'ndjson'\nwalship.endpoint = '${\ $sink->url('/ingest/{schema}/{table}') }'");
$node->reload;

# Large rows: a chunk ends once its rows reach 16 times
# walship.batch_max_bytes (here 64 kB: 1 MB, about ten 100 kB rows), not
# only after chunk_size rows.
$since = $sink->last_seq;
my $wide_job = $node->safe_psql('postgres', q{SELECT walship.backfill('wide')});
ok(poll_until($node, "SELECT state = 'done' FROM walship.backfills WHERE id = $wide_job"),
	'backfill of 100 kB rows finishes');
my ($wide_chunks, $wide_rows) = split /\|/, backfill_row($wide_job, 'chunks_done, rows_sent');
cmp_ok($wide_chunks, '>=', 5, "chunks end by size ($wide_chunks chunks for 60 rows of 100 kB)");
is($wide_rows, '60', 'every row is sent');
my %wide_docs = map { $_->{id} => $_->{doc} } grep { $_->{_op} eq 'r' } table_lines('wide', $since);
is( $node->safe_psql('postgres', 'SELECT string_agg(md5(doc), \',\' ORDER BY id) FROM wide'),
	join(',', map { md5_hex($wide_docs{$_} // '') } 1 .. 60),
	'the rows arrive whole');
$node->append_conf('postgresql.conf', 'walship.batch_max_bytes = 4MB');
$node->reload;

# A partitioned table published through its root (rows move between
# partitions), and a table whose key is a unique index, under a workload.
$node->safe_psql('postgres', q{
CREATE TABLE parted (region text, id int, v int, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu');
CREATE TABLE parted_us PARTITION OF parted FOR VALUES IN ('us');
INSERT INTO parted SELECT CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g, 0 FROM generate_series(1, 20000) g;
CREATE TABLE ukey (a int NOT NULL, b text, c int);
CREATE UNIQUE INDEX ukey_a ON ukey (a);
ALTER TABLE ukey REPLICA IDENTITY USING INDEX ukey_a;
INSERT INTO ukey SELECT g, 'b' || g, 0 FROM generate_series(1, 20000) g;
ALTER PUBLICATION wpub SET (publish_via_partition_root = true);
ALTER PUBLICATION wpub ADD TABLE parted, ukey;
});
my $script2 = "$tmp/workload2.sql";
PostgreSQL::Test::Utils::append_to_file($script2, q{
\set id random(1, 20000)
\set r random(1, 100)
BEGIN;
UPDATE parted SET v = v + 1 WHERE id = :id;
\sleep 5 ms
UPDATE parted SET region = CASE region WHEN 'eu' THEN 'us' ELSE 'eu' END WHERE id = :id + 1 AND :r <= 30;
UPDATE ukey SET c = c + 1, b = md5(b) WHERE a = :id;
END;
DELETE FROM ukey WHERE a = :id + 3 AND :r > 90;
UPDATE ukey SET a = a + 100000 WHERE a = :id + 5 AND :r > 95;
});
mkdir "$tmp/w2" or die "mkdir: $!";
my $workload2 = start_workload($node, "$tmp/w2", '-c', 3, '-T', 3, '--max-tries=50', '-f', $script2);
my $parted_job = $node->safe_psql('postgres', q{SELECT walship.backfill('parted', 500)});
my $ukey_job = $node->safe_psql('postgres', q{SELECT walship.backfill('ukey', 500)});
ok( poll_until($node,
		"SELECT count(*) = 2 FROM walship.backfills WHERE id IN ($parted_job, $ukey_job) AND state = 'done'"),
	'backfills of the partitioned table and of the unique-index table finish');
stop_workload($workload2);
$end_lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_worker_caught_up($node, $end_lsn), 'worker caught up with the second workload');
cmp_ok(scalar(grep { $_->{_op} eq 'r' } table_lines('parted')), '>=', 18000,
	'the partitioned table\'s rows arrive as read lines of the root (less those the stream changed meanwhile)');
is(scalar(table_lines('parted_eu')) + scalar(table_lines('parted_us')), 0,
	'nothing arrives as rows of the partitions');
is(apply_received('parted', 'region, id', 'region, id, v'), '0',
	'partitioned table: applying by _version gives exactly the table');
is(apply_received('ukey', 'a', 'a, b, c'), '0',
	'unique-index key: applying by _version gives exactly the table');
$node->safe_psql('postgres', 'DROP TABLE received, applied');

# A transaction that has written and stays open when a chunk is read holds
# the chunk back (the stream goes on), and says so in pg_stat_activity.
my ($holder_in, $holder_out) = ('', '');
my $holder_timer = IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default);
my $holder = IPC::Run::start([ 'psql', '-XAtq', '-d', $node->connstr('postgres') ],
	'<', \$holder_in, '>', \$holder_out, '2>&1', $holder_timer);
$holder_in .= "BEGIN;\nUPDATE parted SET v = v WHERE id = 1;\nSELECT 'holding';\n";
$holder->pump until $holder_out =~ /holding/;
pass('a transaction that wrote stays open');
my $held_job = $node->safe_psql('postgres', q{SELECT walship.backfill('cond', 100)});
ok( poll_until($node, qq{SELECT count(*) = 1 FROM pg_stat_activity
  WHERE backend_type = 'walship worker'
    AND query LIKE '%backfill $held_job waits for transaction %'}),
	'the worker says which transaction its backfill waits for');
is(backfill_row($held_job, 'state || \' \' || rows_sent'), 'running 0',
	'nothing of the chunk is shipped while the transaction runs');
$node->safe_psql('postgres', 'INSERT INTO cond VALUES (3000, \'live\')');
$end_lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_worker_caught_up($node, $end_lsn), 'live changes still ship meanwhile');
$holder_in .= "COMMIT;\n\\q\n";
$holder->finish;
ok(poll_until($node, "SELECT state = 'done' FROM walship.backfills WHERE id = $held_job"),
	'the backfill finishes once the transaction ends');

# ---------------------------------------------------------------------------
# 3. Rate limit, cancel, a table dropped mid-backfill
# ---------------------------------------------------------------------------
$node->append_conf('postgresql.conf', 'walship.backfill_max_rate = 5000');
$node->reload;
my $slow_job = $node->safe_psql('postgres', q{SELECT walship.backfill('slow', 1000)});
my $slow_start = time;
ok(poll_until($node, "SELECT rows_sent >= 10000 FROM walship.backfills WHERE id = $slow_job"),
	'rate-limited backfill makes progress');
my $slow_rows = backfill_row($slow_job, 'rows_sent');
my $slow_elapsed = time - $slow_start;
cmp_ok($slow_rows, '<=', 5000 * $slow_elapsed + 2000,
	sprintf('at most walship.backfill_max_rate rows per second (%d rows in %.1f s)',
		$slow_rows, $slow_elapsed));
is($node->safe_psql('postgres', "SELECT walship.cancel_backfill($slow_job)"), 't',
	'cancel_backfill() of a running backfill');
is(backfill_row($slow_job, 'state'), 'cancelled', 'state is cancelled');
my $at_cancel = scalar(table_lines('slow'));
sleep 1.5;
my $later = scalar(table_lines('slow'));
cmp_ok($later, '<=', $at_cancel + 1000, "no chunk after the one being read when cancelled ($at_cancel, then $later rows)");
cmp_ok($later, '<', 50000, 'the cancelled backfill did not ship the whole table');
is($node->safe_psql('postgres', "SELECT walship.cancel_backfill($slow_job)"), 'f',
	'cancelling it again says it was not active');

# A clean restart of the server mid-backfill: it resumes after the last
# acknowledged chunk, and every row arrives.
my $resumed_job = $node->safe_psql('postgres', q{SELECT walship.backfill('resumed', 1000)});
ok(poll_until($node, "SELECT rows_sent >= 5000 FROM walship.backfills WHERE id = $resumed_job"),
	'backfill to interrupt made progress');
$node->restart;
my $after = backfill_row($resumed_job, 'state || \' \' || rows_sent');
like($after, qr/^running \d+$/, "after a restart the backfill is still running ($after)");
ok(poll_until($node, "SELECT state = 'done' FROM walship.backfills WHERE id = $resumed_job"),
	'and finishes');
my %resumed_ids = map { $_->{id} => 1 } grep { $_->{_op} eq 'r' } table_lines('resumed');
is(scalar(keys %resumed_ids), 30000, 'every row of the table arrived as a read line');

my $gone_job = $node->safe_psql('postgres', q{SELECT walship.backfill('gone', 1000)});
ok(poll_until($node, "SELECT rows_sent > 0 FROM walship.backfills WHERE id = $gone_job"),
	'backfill of the table to drop started');
$node->safe_psql('postgres', 'DROP TABLE gone');
ok(poll_until($node, "SELECT state = 'failed' FROM walship.backfills WHERE id = $gone_job"),
	'a backfill of a dropped table fails');
like(backfill_row($gone_job, 'error'), qr/table "public\.gone" was dropped/,
	'its error says the table was dropped');
is(walship_status($node, 'state'), 'streaming', 'the worker streams on');

# The worker evaluates a condition under the search_path walship.backfill()
# checks it with (pg_catalog, pg_temp): an unqualified function of public
# is not found, even in a backfill queued by a direct INSERT.
$node->safe_psql('postgres', q{
CREATE FUNCTION public.is_even(i int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT i % 2 = 0';
});
my $path_job = $node->safe_psql('postgres', q{
INSERT INTO walship.backfills (relation, schema_name, table_name, chunk_size, condition)
VALUES ('cond'::regclass, 'public', 'cond', 100, 'is_even(id)') RETURNING id});
ok(poll_until($node, "SELECT state = 'failed' FROM walship.backfills WHERE id = $path_job"),
	'a condition calling an unqualified function of public fails the backfill');
like(backfill_row($path_job, 'error'), qr/function is_even\(integer\) does not exist/,
	'with the error of the lookup');
my $qualified_job = $node->safe_psql('postgres',
	q{SELECT walship.backfill('cond', 100, 'public.is_even(id)')});
ok(poll_until($node, "SELECT state = 'done' FROM walship.backfills WHERE id = $qualified_job"),
	'the schema-qualified function works');

$node->append_conf('postgresql.conf', 'walship.backfill_max_rate = 0');
$node->reload;
$node->safe_psql('postgres', 'INSERT INTO cond VALUES (5000, \'after\')');
$end_lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_insert_lsn()');
ok(wait_worker_caught_up($node, $end_lsn), 'changes still ship after the failed backfill');

my $log = slurp_file($node->logfile);
like($log, qr/walship backfill $gone_job of table "public.gone" failed: table "public.gone" was dropped/,
	'the failure is in the server log');
$node->stop;

# ---------------------------------------------------------------------------
# 4. walship.initial_backfill on a new pipeline
# ---------------------------------------------------------------------------
my $sink2 = WalshipHttpSink->new(dir => "$tmp/sink2");
$sink2->set_behaviour({ default => { status => 204 } });
my $fresh = worker_node('fresh', qq{
walship.database = 'postgres'
walship.publication = 'fpub'
walship.endpoint = '${\ $sink2->url('/ingest') }'
walship.format = 'ndjson'
walship.ndjson_shape = 'envelope'
walship.initial_backfill = on
});
$fresh->start;
$fresh->safe_psql('postgres', q{
CREATE TABLE a (id int PRIMARY KEY, v text);
CREATE TABLE b (x int, y int, PRIMARY KEY (y, x));
CREATE TABLE nokey (v text);
INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 300) g;
INSERT INTO b SELECT g, -g FROM generate_series(1, 200) g;
INSERT INTO nokey VALUES ('x');
CREATE PUBLICATION fpub FOR TABLE a, b, nokey WITH (publish = 'insert');
CREATE EXTENSION walship;
});
ok(poll_until($fresh, q{SELECT count(*) = 2 AND bool_and(state = 'done') FROM walship.backfills}),
	'initial backfills of the tables with a key are queued and done');
my @lines = map { parse_ndjson($_) } $sink2->bodies(status => [ 200, 204 ]);
is(scalar(grep { $_->{op} eq 'r' && $_->{source}{table} eq 'a' } @lines), 300, 'every row of a');
is(scalar(grep { $_->{op} eq 'r' && $_->{source}{table} eq 'b' } @lines), 200, 'every row of b');
my @b = map { $_->{after}{y} } grep { $_->{source}{table} eq 'b' } @lines;
is_deeply(\@b, [ -200 .. -1 ], 'rows go out in key order');
like(slurp_file($fresh->logfile), qr/walship does not backfill table public.nokey: table public.nokey has no primary key/,
	'the table without a key is reported');
$fresh->stop;

done_testing();
