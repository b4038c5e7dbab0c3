# Copyright (c) walship developers
#
# t/048_clickhouse_rowbinary.pl
#	  walship.format = 'rowbinary' into a real ClickHouse 18.16
#	  (t/WalshipClickHouse.pm, dialect clickhouse_18) and into ClickHouse 26
#	  (chdb behind t/chdb_http.js, t/WalshipChdb.pm, dialect clickhouse).
#
#	  1. Every type of t/045_clickhouse_types.pl, through RowBinary, gives
#	     ClickHouse the same rows as the NDJSON path, in both dialects: the
#	     records of a workload are encoded both ways
#	     (walship.encode_ndjson(..., 'flat', dialect) and
#	     walship.encode_rowbinary(), which the worker's encoder is),
#	     inserted into two databases with the same DDL, and every stored
#	     row, tombstones and old versions included, is equal.
#	     Rows that RowBinary cannot write as declared (an unchanged TOAST
#	     value) are refused with a clear error instead of being written.
#	  2. The worker: the orders workload shipped as RowBinary (gzip) while
#	     the worker is killed with SIGKILL twice; once caught up, SELECT ...
#	     FINAL WHERE NOT _deleted equals PostgreSQL row for row.  The
#	     endpoint is ClickHouse's base URL with a setting and a stray query=
#	     parameter, which the worker replaces by its INSERT.  Misconfigured
#	     (no walship.clickhouse_database), the worker reports it in
#	     walship.status and sends nothing.
#
#	  Skipped only when clickhouse-server is not installed.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use Cwd qw(abs_path);
use IO::Compress::Gzip qw(gzip $GzipError);
use MIME::Base64 qw(decode_base64);
use Time::HiRes qw(time sleep);
use WalshipChdb;
use WalshipClickHouse;
use WalshipOrders;
use WalshipTest;
use WalshipTypes;

my ($available, $why) = WalshipClickHouse->available;
plan skip_all => "clickhouse-server is not installed: $why" unless $available;

my $tmp = abs_path(PostgreSQL::Test::Utils::tempdir('clickhouse_rb'));
my $ch = WalshipClickHouse->new(dir => "$tmp/ch", no_tcp => 1);
$ch->query("CREATE DATABASE $_") for qw(nd rb shop);
my ($chdb_ok, $chdb_why) = WalshipChdb->available;
my $ch26 = $chdb_ok ? WalshipChdb->new(dir => "$tmp/chdb") : undef;
if ($ch26) { $ch26->query("CREATE DATABASE $_") for qw(nd rb); }
else { diag("ClickHouse 26 (chdb) is not available, its part is skipped: $chdb_why"); }

# ===========================================================================
# 1. Types: RowBinary equals the NDJSON path
# ===========================================================================
my $node = worker_node('rowbinary', q{
max_connections = 30
restart_after_crash = on
timezone = 'UTC'
walship.enabled = off
walship.database = 'postgres'
walship.publication = 'shop'
walship.format = 'rowbinary'
walship.dialect = 'clickhouse_18'
walship.compression = 'gzip'
walship.batch_max_changes = 100
walship.batch_max_delay = 20ms
walship.max_inflight = 4
walship.retry_min_delay = 20ms
walship.retry_max_delay = 500ms
});
$node->start;

sub psql { return $node->safe_psql('postgres', $_[0]); }

my @tables = @TYPE_TABLES;
psql(type_tables_sql('dec38 numeric(38,10), dec18 numeric(18,4), o oid,'));
create_type_slots($node, sub {
	my ($t) = @_;
	for my $db (qw(nd rb))
	{
		$ch->query(psql("SELECT walship.clickhouse_ddl('$t', '$db', 'clickhouse_18')"));
		$ch26->query(psql("SELECT walship.clickhouse_ddl('$t', '$db', 'clickhouse')")) if $ch26;
	}
});

# types has rows of its own here: the RowBinary edge cases, the extra
# columns
psql(orders_workload_sql() . <<'TYPES' . types_changes_sql() . other_tables_workload_sql() . <<'TOAST');
INSERT INTO types (id, qty, amount, big, anyn, neg, m, ts, tz, d, b, j, jb, u,
                   f4, f8, bo, s2, i8, t, vc, ch, tm, iv, ip, ia, ta, na, ba,
                   da, tsa, ua, dec38, dec18, o) VALUES
 (1, 5, 12.5, 123456789012345678901234567890.12,
  3.14159265358979323846264338327950288, 120, 'happy',
  '2024-03-05 12:34:56.123456', '2024-03-05 12:34:56.123456+02', '2024-02-29',
  '\x0001ff80', E'{"a": [1, 2.5, "x\\ny"],\n  "b": null}', '{"k": "v", "n": 1}',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 0.1, 1.5e300, true, -32768,
  9223372036854775807, E'caf\u00e9 \U0001F600 "q" \\ tab\tnl\n\x01', 'varchar',
  'ab', '12:34:56.789', '1 day 02:03:04', '10.0.0.1/8', '{1,NULL,3}',
  '{"a","b\"c","",NULL}', '{1.5,NULL,-2.0}', '{t,f,NULL}',
  '{2024-01-01,NULL,infinity}', '{"2024-03-05 12:34:56.5+00",NULL}',
  '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}',
  -1234567890123456789012345678.0123456789, 99999999999999.9999, 4294967295),
 (2, 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  '{}', NULL, '{}', '{}', '{}', '{}', '{}', NULL, NULL, NULL),
 (3, 2, -0.01, -1, 'NaN', -10, 'sad', 'infinity', '-infinity', '1970-01-02',
  '\x', '[]', 'null', '00000000-0000-0000-0000-000000000000', 'NaN',
  '-Infinity', false, 0, -9223372036854775808, '', '', '', '24:00:00',
  '-1 mon', '::1', '{}', '{}', '{}', '{}', '{2120-01-01,1960-01-01,2149-06-06}', '{}', '{}',
  0.5, -0.0001, 0),
 (4, 3, 0.5, 0, '1e-20', 0, 'ok', '1969-07-20 20:17:40',
  '1900-01-01 00:00:00+00', '2105-12-31', '\x00', '"s"', '1.5', NULL,
  'Infinity', 'NaN', NULL, 1, 0, 'x', NULL, NULL, NULL, NULL, NULL,
  '{7}', '{x}', '{0.5}', '{t}', '{2000-01-01}', '{}', '{}', 1, 1, 1),
 (5, 9, 1, 1, 1, 10, 'ok', NULL, NULL, '1969-12-31', NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, 'bye', NULL, NULL, NULL, NULL, NULL,
  '{}', '{}', '{}', '{}', '{}', '{}', '{}', NULL, NULL, NULL),
 (7, 4, 2, 2, 2, 20, 'sad', NULL, NULL, 'infinity', NULL, NULL, NULL,
  'ffffffff-0000-1111-2222-333344445555', NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, '{}', NULL, '{}', '{}', '{}', '{}', '{}',
  NULL, NULL, NULL);
TYPES
INSERT INTO full_rows SELECT 300, string_agg(md5(i::text), ''), 1 FROM generate_series(1, 1000) i;
UPDATE full_rows SET n = 2 WHERE id = 300;
TOAST

# the records of each slot, kept so both encoders read the same ones
sub take_records
{
	my ($t) = @_;
	psql(qq{DROP TABLE IF EXISTS recs_$t;
CREATE TABLE recs_$t AS
SELECT coalesce(string_agg(data, ''::bytea ORDER BY n), '') AS records
FROM pg_logical_slot_get_binary_changes('s_$t', NULL, NULL,
       'publication_names', 'p_$t', 'format_version', '1')
     WITH ORDINALITY AS c(lsn, xid, data, n)});
}

sub gzipped
{
	my ($body) = @_;
	my $z;
	gzip(\$body => \$z) or die "gzip: $GzipError";
	return $z;
}

# inserts the RowBinary requests of recs_$t into database rb of $ch
sub insert_rowbinary
{
	my ($ch, $dialect, $t) = @_;
	my @requests = split /\n/, psql(qq{
SELECT statement || ' ' || rows || ' ' || translate(encode(body, 'base64'), E'\\n', '')
  FROM recs_$t, walship.encode_rowbinary(records, 'rb', '$dialect')});
	my $rows = 0;
	for my $request (@requests)
	{
		my ($statement, $n, $b64) = $request =~ /^(.*) (\d+) (\S*)$/ or die "bad line $request";
		my $r = $ch->request('POST', '/?query=' . WalshipClickHouse::uri_escape($statement),
			gzipped(decode_base64($b64)), { 'Content-Encoding' => 'gzip' });
		is($r->{status}, 200, "$dialect $t: ClickHouse accepts the RowBinary body ($n rows)")
		  or diag("$statement\n$r->{content}");
		$rows += $n;
	}
	return $rows;
}

my %key = (events => 'source, seq', lines => 'order_id, line');

# NDJSON and RowBinary of recs_$t into nd and rb of $ch: every row equal
sub compare_paths
{
	my ($ch, $dialect, $t) = @_;
	my $ndjson = psql("SELECT walship.encode_ndjson(records, 'flat', '$dialect') FROM recs_$t") . "\n";
	my $r = $ch->insert(table => "nd.$t", body => $ndjson, gzip => 1);
	is($r->{status}, 200, "$dialect $t: ClickHouse accepts the NDJSON body") or diag($r->{content});
	my $lines = grep { $_ ne '' } split /\n/, $ndjson;
	my $rows = insert_rowbinary($ch, $dialect, $t);
	is($rows, $lines, "$dialect $t: as many RowBinary rows as NDJSON lines ($lines)");

	# every stored row, every column, old versions and tombstones included
	my $all = "ORDER BY _lsn, _seq, _deleted DESC FORMAT TSV";
	my $nd = $ch->query("SELECT * FROM nd.$t $all");
	my $rb = $ch->query("SELECT * FROM rb.$t $all");
	cmp_ok(length($nd), '>', 0, "$dialect $t: rows stored");
	is($rb, $nd, "$dialect $t: RowBinary stored exactly the rows NDJSON stored");
	my $order = $key{$t} // 'id';
	is($ch->query("SELECT * FROM rb.$t FINAL WHERE NOT _deleted ORDER BY $order FORMAT TSV"),
		$ch->query("SELECT * FROM nd.$t FINAL WHERE NOT _deleted ORDER BY $order FORMAT TSV"),
		"$dialect $t: FINAL WHERE NOT _deleted equal");
}

for my $t (@tables)
{
	take_records($t);
	compare_paths($ch, 'clickhouse_18', $t);
	compare_paths($ch26, 'clickhouse', $t) if $ch26;
}
# the values the dialect maps specially, seen through RowBinary
is($ch->query("SELECT toString(d), toString(da), toString(u) FROM rb.types FINAL WHERE id IN (1, 4, 7) ORDER BY id FORMAT TSV"),
	"2024-02-29\t[\\'2024-01-01\\',NULL,\\'2105-12-31\\']\ta0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\n"
	  . "2105-12-31\t[\\'2000-01-01\\']\t\\N\n"
	  . "2105-12-31\t[]\tffffffff-0000-1111-2222-333344445555\n",
	'types: dates (infinity in an array, the Date range) and UUIDs as ClickHouse shows them');
is($ch->query("SELECT length(ta) FROM rb.types FINAL WHERE id IN (2, 4) ORDER BY id FORMAT TSV"),
	"0\n1\n", 'types: a NULL array is []');
if ($ch26)
{
	is($ch26->query("SELECT toString(big), toString(d), toString(ts), toString(bo), toString(dec38) FROM rb.types FINAL WHERE id IN (1, 3) ORDER BY id FORMAT TSV"),
		"123456789012345678901234567890.12\t2024-02-29\t2024-03-05 12:34:56.123456\ttrue\t-1234567890123456789012345678.0123456789\n"
		  . "-1\t1970-01-02\t2299-12-31 23:59:59.999999\tfalse\t0.5\n",
		'clickhouse: Decimal256, Date32, DateTime64 (infinity: the end of its range) and Bool through RowBinary');
}

# numeric NaN into a Decimal: NULL in clickhouse_18 (as the NDJSON line's
# null), refused in clickhouse (a Decimal has no NaN; the NDJSON line is
# refused by ClickHouse too)
psql(q{UPDATE types SET amount = 'NaN' WHERE id = 4});
take_records('types');
is(insert_rowbinary($ch, 'clickhouse_18', 'types'), 1, 'clickhouse_18: numeric NaN encoded');
is($ch->query_value("SELECT isNull(amount) FROM rb.types FINAL WHERE id = 4"), '1',
	'... as NULL in the Nullable(Decimal)');
my ($nret, $nout, $nerr) = $node->psql('postgres',
	q{SELECT count(*) FROM recs_types, walship.encode_rowbinary(records, 'rb', 'clickhouse')});
like($nerr, qr/update of "public.types" cannot be written as RowBinary: column "amount": a numeric NaN or infinity/,
	'clickhouse: numeric NaN into a Decimal is refused, not made up');

# An unchanged TOAST value under the default replica identity: the NDJSON
# line leaves the column out (ClickHouse then rejects it); RowBinary has no
# way to leave a column out and refuses to make the row up.
psql(q{INSERT INTO orders (id, customer, total, note)
       SELECT 300, 'big', 1, string_agg(md5(i::text), '') FROM generate_series(1, 1000) i});
psql('UPDATE orders SET total = 2 WHERE id = 300');
take_records('orders');
my ($ret, $out, $err) = $node->psql('postgres',
	q{SELECT count(*) FROM recs_orders, walship.encode_rowbinary(records, 'rb', 'clickhouse_18')});
like($err, qr/update of "public.orders" cannot be written as RowBinary: column "note" has an unchanged TOAST value/,
	'unchanged TOAST value: refused, naming the column');

# ===========================================================================
# 2. The worker, with SIGKILLs
# ===========================================================================
$node->safe_psql('postgres', q{
CREATE TABLE shop_orders (
    id         bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    country    text NOT NULL,
    total      numeric(12,2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    note       text
);
CREATE PUBLICATION shop FOR TABLE shop_orders;
});
$ch->query(psql(q{SELECT walship.clickhouse_ddl('shop_orders', 'shop', 'clickhouse_18')}));

# misconfigured first: no walship.clickhouse_database
my $endpoint = $ch->url('/?query=SELECT%201&input_format_allow_errors_num=0');
$node->append_conf('postgresql.conf', qq{
walship.enabled = on
walship.endpoint = '$endpoint'
});
$node->reload;
psql(q{INSERT INTO shop_orders (country, total) VALUES ('DE', 1)});
ok($node->poll_query_until('postgres', q{
SELECT state = 'error' AND last_error = 'walship.format = rowbinary needs walship.clickhouse_database'
  FROM walship.status}),
	'without walship.clickhouse_database: state error, saying so')
  or diag(psql('SELECT * FROM walship.status'));
is($ch->query_value('SELECT count() FROM shop.shop_orders'), '0', '... and nothing was sent');

$node->append_conf('postgresql.conf', "walship.clickhouse_database = 'shop'\n");
$node->reload;
ok(wait_streaming($node), 'with walship.clickhouse_database set the worker streams');

my $workload = start_orders_workload($node, $tmp, 'shop_orders', 250, note => 1);
sleep 2;
for my $round (1 .. 2)
{
	crash_worker($node, "round $round") or last;
	sleep 2;
}
stop_workload($workload);

my $end_lsn = psql('SELECT pg_current_wal_lsn()');
ok(wait_worker_caught_up($node, $end_lsn), "caught up to $end_lsn")
  or diag(psql('SELECT * FROM walship.status'));
is(psql(q{SELECT format || ' ' || rejected_batches || ' ' || coalesce(last_error, '') FROM walship.status}),
	'rowbinary 0 ', 'format rowbinary, nothing rejected, no error');

my $pg = psql(q{
SELECT id || ' ' || country || ' ' || total || ' '
       || (extract(epoch FROM created_at) * 1000000)::bigint || ' ' || coalesce(note, 'NULL')
  FROM shop_orders ORDER BY id});
my $chrows = $ch->query(q{
SELECT concat(toString(id), ' ', country, ' ', toString(total), ' ', toString(created_at), ' ',
              ifNull(note, 'NULL'))
  FROM shop.shop_orders FINAL WHERE NOT _deleted ORDER BY id FORMAT TSV});
$chrows =~ s/\n\z//;
cmp_ok(scalar(split /\n/, $pg), '>', 300, 'the workload left orders');
is($chrows, $pg, 'every order: ClickHouse FINAL WHERE NOT _deleted equals PostgreSQL');
# The worker with an unchanged TOAST value: the request is a rejection
# without being sent (here set aside as a dead letter), and shipping goes on.
$node->append_conf('postgresql.conf', "walship.on_rejected = 'dead_letter'\n");
$node->reload;
psql(q{INSERT INTO shop_orders (id, country, total, note)
       SELECT 900000, 'DE', 1, string_agg(md5(i::text), '') FROM generate_series(1, 1000) i});
psql(q{UPDATE shop_orders SET total = 2 WHERE id = 900000});
ok($node->poll_query_until('postgres', q{
SELECT count(*) = 1 FROM walship.dead_letter
 WHERE error LIKE '%not sent: update of "public.shop_orders" cannot be written as RowBinary: column "note" has an unchanged TOAST value%'}),
	'an unchanged TOAST value in the worker: its request is rejected unsent, a dead letter naming the column')
  or diag(psql('SELECT error FROM walship.dead_letter'));
# (rows of the same request share its fate, as in an NDJSON body)
psql(q{INSERT INTO shop_orders (id, country, total) VALUES (900001, 'FR', 3)});
ok(wait_worker_caught_up($node, psql('SELECT pg_current_wal_lsn()')), '... and shipping goes on');
is($ch->query_value('SELECT count() FROM shop.shop_orders FINAL WHERE id IN (900000, 900001) AND total = 2'),
	'0', '... no made-up row of the update was stored');
is($ch->query_value('SELECT count() FROM shop.shop_orders FINAL WHERE id = 900001'), '1',
	'... later changes were');

my $log = slurp_file($node->logfile);
is(worker_sigkills($log), 2, 'the log shows the 2 SIGKILLs of the worker');
is(join("\n", worker_errors($log)), '', 'the worker logged no ERROR, FATAL or PANIC');

$node->stop;
$ch->stop;
$ch26->stop if $ch26;
done_testing();
