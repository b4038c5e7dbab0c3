# Copyright (c) walship developers
#
# t/046_clickhouse26_types.pl
#	  t/045_clickhouse_types.pl for current ClickHouse: the tables that
#	  walship.clickhouse_ddl(..., 'clickhouse') prints, fed with what
#	  walship.encode_ndjson(records, 'flat', 'clickhouse') makes of the same
#	  workload, on ClickHouse 26 (chdb behind t/chdb_http.js,
#	  t/WalshipChdb.pm), through the endpoint URL docs/clickhouse.md gives
#	  (input_format_skip_unknown_fields=0): every CREATE TABLE is accepted,
#	  every body is inserted (zstd, as the worker sends it), and
#	  SELECT ... FINAL (ReplacingMergeTree(_version, _deleted) leaves deleted
#	  rows out by itself) equals the PostgreSQL table value by value, NULLs
#	  included, for every type of t/045: DateTime64(6, 'UTC') with its
#	  microseconds, Date32, Bool, UUID, Decimal up to 76 digits, unbounded
#	  numeric as its exact text (NaN and infinities included), json/jsonb
#	  as their text, arrays.  Also pins down the limits docs/clickhouse.md
#	  documents (numeric NaN refused by a Decimal, dates and timestamps
#	  outside 1900-2299 at the range's ends, NULL arrays, unchanged TOAST
#	  values refused).  No worker: records come from walship slots through
#	  pg_logical_slot_get_binary_changes.  Skipped when chdb could not be
#	  installed (unless WALSHIP_REQUIRE_CHDB=1).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use JSON::PP;
use WalshipChdb;
use WalshipTest;

my ($available, $why) = WalshipChdb->available;
plan skip_all => "ClickHouse 26 (chdb) is not available: $why" unless $available;

my $tmp = PostgreSQL::Test::Utils::tempdir('chdb');
my $ch = WalshipChdb->new(dir => "$tmp/chdb");
$ch->query('CREATE DATABASE analytics');

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init(allows_streaming => 'logical');
$node->append_conf('postgresql.conf', plugin_libraries_conf() . q{
timezone = 'UTC'
});
$node->start;

my $json = JSON::PP->new->utf8->canonical->allow_nonref;

sub psql { return $node->safe_psql('postgres', $_[0]); }

# The endpoint settings docs/clickhouse.md asks for
my %settings = (input_format_skip_unknown_fields => 0);

# ---------------------------------------------------------------------------
# Tables (as t/045), each with its own publication and slot
# ---------------------------------------------------------------------------
my @tables = qw(orders types lines events full_rows);
psql(<<'SQL');
CREATE EXTENSION walship;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer NOT NULL CHECK (VALUE > 0);
CREATE DOMAIN money2 AS numeric(12,2);
CREATE TABLE orders (
    id         bigint PRIMARY KEY,
    customer   text NOT NULL,
    country    text,
    total      numeric(12,2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    note       text);
CREATE TABLE types (
    id int PRIMARY KEY, qty posint, amount money2, big numeric(40,2),
    anyn numeric, neg numeric(3,-1), m mood, ts timestamp, tz timestamptz,
    d date, b bytea, j json, jb jsonb, u uuid, f4 real, f8 float8, bo bool,
    s2 int2, i8 int8, t text, vc varchar(10), ch char(3), tm time,
    iv interval, ip inet, ia int[] NOT NULL DEFAULT '{}', ta text[],
    na numeric(5,1)[], ba bool[], da date[], tsa timestamptz[], ua uuid[],
    g int GENERATED ALWAYS AS (qty * 2) STORED,
    dropped int);
ALTER TABLE types DROP COLUMN dropped;
CREATE TABLE lines (
    order_id bigint, line int, sku text NOT NULL, qty int NOT NULL,
    PRIMARY KEY (order_id, line));
CREATE TABLE events (
    id bigserial PRIMARY KEY, source text NOT NULL, seq int NOT NULL,
    payload jsonb);
CREATE UNIQUE INDEX events_source_seq ON events (source, seq);
ALTER TABLE events REPLICA IDENTITY USING INDEX events_source_seq;
CREATE TABLE full_rows (id int PRIMARY KEY, v text, n int);
ALTER TABLE full_rows REPLICA IDENTITY FULL;
SQL
for my $t (@tables)
{
	psql("CREATE PUBLICATION p_$t FOR TABLE $t");
	psql("SELECT 'x' FROM pg_create_logical_replication_slot('s_$t', 'walship')");
}

# ---------------------------------------------------------------------------
# The ClickHouse tables, as clickhouse_ddl() prints them for ClickHouse 26
# ---------------------------------------------------------------------------
for my $t (@tables)
{
	my $ddl = psql("SELECT walship.clickhouse_ddl('$t', 'analytics')");
	like($ddl, qr/ENGINE = ReplacingMergeTree\(_version, _deleted\)\nORDER BY \(.*\)\nSETTINGS non_replicated_deduplication_window = 1000$/,
		"$t: DDL printed (the default dialect is clickhouse)");
	my $r = $ch->request('POST', '/', $ddl);
	is($r->{status}, 200, "$t: ClickHouse 26 accepts the CREATE TABLE")
	  or diag("$ddl\n$r->{content}");
}
is($ch->query_value("SELECT sorting_key FROM system.tables WHERE database = 'analytics' AND name = 'events'"),
	'source, seq', 'events: ordered by the replica identity index, not the primary key');
my %coltype = map { $_->{name} => $_->{type} } @{ $ch->query_rows(
	"SELECT name, type FROM system.columns WHERE database = 'analytics' AND table = 'types'") };
is_deeply(
	[ map { $coltype{$_} } qw(ts tz d bo u amount big anyn j b na da tsa qty) ],
	[
		"Nullable(DateTime64(6, 'UTC'))", "Nullable(DateTime64(6, 'UTC'))",
		'Nullable(Date32)', 'Nullable(Bool)', 'Nullable(UUID)', 'Nullable(Decimal(12, 2))',
		'Nullable(Decimal(40, 2))', 'Nullable(String)', 'Nullable(String)',
		'Nullable(String)', 'Array(Nullable(Decimal(5, 1)))', 'Array(Nullable(Date32))',
		"Array(Nullable(DateTime64(6, 'UTC')))", 'Int32'
	],
	'types: the ClickHouse 26 column types (docs/clickhouse.md)');

# ---------------------------------------------------------------------------
# The workload
# ---------------------------------------------------------------------------
psql(<<'SQL');
INSERT INTO orders (id, customer, country, total)
SELECT i, 'c' || i, (ARRAY['DE', 'FR', 'US', 'IT'])[1 + i % 4], i * 1.25
  FROM generate_series(1, 200) i;
UPDATE orders SET total = total + 1 WHERE id % 4 = 0;
UPDATE orders SET country = 'ES' WHERE id % 7 = 0;
DELETE FROM orders WHERE id % 5 = 0;
UPDATE orders SET id = 1000 WHERE id = 3;               -- the key changes
UPDATE orders SET id = id + 2000 WHERE id BETWEEN 11 AND 14;
BEGIN;
UPDATE orders SET total = 7 WHERE id = 1;
UPDATE orders SET total = 8 WHERE id = 1;
UPDATE orders SET country = NULL WHERE id = 1;
COMMIT;
BEGIN;                                                  -- gone and back
DELETE FROM orders WHERE id = 2;
INSERT INTO orders (id, customer, country, total) VALUES (2, 'again', 'FR', 2.22);
COMMIT;
BEGIN;                                                  -- back and gone
INSERT INTO orders (id, customer, total) VALUES (5, 'ghost', 5);
DELETE FROM orders WHERE id = 5;
COMMIT;
UPDATE orders SET note = 'a "quoted" note' || E'\n' || 'on two lines' WHERE id = 4;

INSERT INTO types (id, qty, amount, big, anyn, neg, m, ts, tz, d, b, j, jb, u,
                   f4, f8, bo, s2, i8, t, vc, ch, tm, iv, ip, ia, ta, na, ba,
                   da, tsa, ua) VALUES
 (1, 5, 12.5, 123456789012345678901234567890.12,
  3.14159265358979323846264338327950288, 120, 'happy',
  '2024-03-05 12:34:56.123456', '2024-03-05 12:34:56.123456+02', '2024-02-29',
  '\x0001ff80', E'{"a": [1, 2.5, "x\\ny"],\n  "b": null}', '{"k": "v", "n": 1}',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 0.1, 1.5e300, true, -32768,
  9223372036854775807, E'caf\u00e9 \U0001F600 "q" \\ tab\tnl\n', 'varchar',
  'ab', '12:34:56.789', '1 day 02:03:04', '10.0.0.1/8', '{1,NULL,3}',
  '{"a","b\"c","",NULL}', '{1.5,NULL,-2.0}', '{t,f,NULL}',
  '{2024-01-01,NULL}', '{"2024-03-05 12:34:56.5+00",NULL}',
  '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}'),
 (2, 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  '{}', '{}', '{}', '{}', '{}', '{}', '{}'),
 (3, 2, -0.01, -1, 'NaN', -10, 'sad', 'infinity', '-infinity', '1970-01-02',
  '\x', '[]', 'null', '00000000-0000-0000-0000-000000000000', 'NaN',
  '-Infinity', false, 0, -9223372036854775808, '', '', '', '24:00:00',
  '-1 mon', '::1', '{}', '{}', '{}', '{}', '{}', '{}', '{}'),
 (4, 3, 0, 0, '1e-20', 0, 'ok', '1969-07-20 20:17:40',
  '1900-01-01 00:00:00+00', '2105-12-31', '\x00', '"s"', '1.5', NULL,
  'Infinity', 'NaN', NULL, 1, 0, 'x', NULL, NULL, NULL, NULL, NULL,
  '{7}', '{x}', '{0.5}', '{t}', '{2000-01-01}', '{}', '{}'),
 (5, 9, 1, 1, 1, 10, 'ok', NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, 'bye', NULL, NULL, NULL, NULL, NULL,
  '{}', '{}', '{}', '{}', '{}', '{}', '{}');
UPDATE types SET t = 'changed', amount = 99.99, ia = '{4,5}' WHERE id = 1;
UPDATE types SET id = 6 WHERE id = 5;
DELETE FROM types WHERE id = 6;

INSERT INTO lines SELECT o, l, 'sku-' || o || '-' || l, l * 2
  FROM generate_series(1, 5) o, generate_series(1, 3) l;
UPDATE lines SET qty = qty + 10 WHERE line = 2;
UPDATE lines SET line = 9 WHERE order_id = 1 AND line = 1;    -- key changes
UPDATE lines SET order_id = 50 WHERE order_id = 2;
DELETE FROM lines WHERE order_id = 3;

INSERT INTO events (source, seq, payload)
SELECT s, n, jsonb_build_object('n', n) FROM unnest(ARRAY['web', 'app']) s,
       generate_series(1, 4) n;
UPDATE events SET payload = '{"changed": true}' WHERE seq = 2;
UPDATE events SET seq = 40 WHERE source = 'web' AND seq = 4;  -- key changes
DELETE FROM events WHERE source = 'app' AND seq = 3;

INSERT INTO full_rows SELECT i, 'v' || i, i FROM generate_series(1, 6) i;
UPDATE full_rows SET n = n * 10 WHERE id % 2 = 0;
UPDATE full_rows SET id = 60 WHERE id = 6;
DELETE FROM full_rows WHERE id = 1;
SQL

# ---------------------------------------------------------------------------
# Ship: the records of each slot, encoded as the worker encodes them
# ---------------------------------------------------------------------------
sub ndjson_of
{
	my ($t) = @_;
	return slot_ndjson($node, "s_$t", "p_$t", 'flat', 'clickhouse') . "\n";
}

sub ship
{
	my ($t, $body) = @_;
	return $ch->insert(table => "analytics.$t", body => $body, zstd => 1,
		settings => \%settings);
}

my %body;
for my $t (@tables)
{
	$body{$t} = ndjson_of($t);
	my $r = ship($t, $body{$t});
	is($r->{status}, 200, "$t: ClickHouse 26 accepts the NDJSON body (zstd)")
	  or diag($r->{content});
}

# Redelivery without a token: duplicates with the same _version, which
# FINAL collapses.
my $r = ship('orders', $body{orders});
is($r->{status}, 200, 'orders: body delivered a second time');

# ---------------------------------------------------------------------------
# Compare: PostgreSQL's rows and ClickHouse's FINAL
# ---------------------------------------------------------------------------

# Per column: name => kind.  Each kind is a PostgreSQL expression and a
# ClickHouse expression ('%s' is the column) that should give equal text.
# (greatest() and least() skip NULLs: a NULL must stay NULL)
my $ts_pg = q{CASE WHEN %1$s IS NOT NULL THEN to_char(greatest(least(%1$s::timestamp,
	'2299-12-31 23:59:59.999999'), '1900-01-01'), 'YYYY-MM-DD HH24:MI:SS.US') END};
my $d_pg = q{CASE WHEN %1$s IS NOT NULL THEN greatest(least(%1$s, '2299-12-31'), '1900-01-01')::text END};
my $arr_ch = q{arrayStringConcat(arrayMap(x -> ifNull(toString(x), 'NULL'), %s), ',')};
my %kind = (
	text => [ q{CASE WHEN %1$s IS NOT NULL THEN concat(%1$s) END}, 'toString(%s)' ],
	int => [ '%s::text', 'toString(%s)' ],
	# Decimal: ClickHouse prints no trailing fraction zeros
	dec => [ 'trim_scale(%s)::text', 'toString(%s)' ],
	float => [ '%s::float8::text', 'toString(toFloat64(%s))' ],
	# timestamps and dates: within 1900-01-01 .. 2299-12-31 (infinity: its ends)
	dt64 => [ $ts_pg, 'toString(%s)' ],
	d32 => [ $d_pg, 'toString(%s)' ],
	d32array => [
		q{array_to_string(ARRAY(SELECT } . ($d_pg =~ s/%1\$s/e/gr) . q{ FROM unnest(%s) e), ',', 'NULL')},
		$arr_ch
	],
	bytea => [ q{encode(%s, 'hex')}, '%s' ],
	array => [ q{array_to_string(%s, ',', 'NULL')}, $arr_ch ],
	textarray => [ q{array_to_string(ARRAY(SELECT e::text FROM unnest(%s) e), ',', 'NULL')}, $arr_ch ],
	decarray => [ q{array_to_string(ARRAY(SELECT trim_scale(e) FROM unnest(%s) e), ',', 'NULL')}, $arr_ch ],
	dt64array => [
		q{array_to_string(ARRAY(SELECT } . ($ts_pg =~ s/%1\$s/e/gr) . q{ FROM unnest(%s) e), ',', 'NULL')},
		$arr_ch
	],);

my %columns = (
	orders => [
		id => 'int', customer => 'text', country => 'text', total => 'dec',
		created_at => 'dt64', note => 'text'
	],
	types => [
		id => 'int', qty => 'int', amount => 'dec', big => 'dec',
		anyn => 'int', neg => 'dec', m => 'text', ts => 'dt64', tz => 'dt64',
		d => 'd32', b => 'bytea', j => 'text', jb => 'text', u => 'text',
		f4 => 'float', f8 => 'float', bo => 'int', s2 => 'int', i8 => 'int',
		t => 'text', vc => 'text', ch => 'text', tm => 'text', iv => 'text',
		ip => 'text', ia => 'array', ta => 'array', na => 'decarray',
		ba => 'textarray', da => 'd32array', tsa => 'dt64array', ua => 'array'
	],
	lines => [ order_id => 'int', line => 'int', sku => 'text', qty => 'int' ],
	events => [ id => 'int', source => 'text', seq => 'int', payload => 'text' ],
	full_rows => [ id => 'int', v => 'text', n => 'int' ],);
my %order_by = (events => 'source, seq', lines => 'order_id, line');

sub same_value
{
	my ($kind, $a, $b) = @_;
	return !defined $a && !defined $b if !defined $a || !defined $b;
	if ($kind eq 'float')
	{
		no warnings 'numeric';
		my ($x, $y) = ($a + 0, $b + 0);
		return 1 if $x != $x && $y != $y;    # NaN
		return $x == $y;
	}
	return $a eq $b;
}

sub compare
{
	my ($t) = @_;
	my @spec = @{ $columns{$t} };
	my (@pg, @chx, @names, %kinds);
	while (my ($c, $k) = splice(@spec, 0, 2))
	{
		push @names, $c;
		$kinds{$c} = $k;
		push @pg, sprintf("'%s', " . $kind{$k}[0], $c, $c);
		# an alias named like the column would shadow it in ORDER BY
		push @chx, sprintf($kind{$k}[1], "`$c`") . " AS `v_$c`";
	}
	my $order = $order_by{$t} // 'id';
	my $pg_rows = $json->decode(
		psql("SELECT coalesce(json_agg(json_build_object(" . join(', ', @pg)
			  . ") ORDER BY $order), '[]') FROM $t"));
	# no WHERE NOT _deleted: ReplacingMergeTree(_version, _deleted) does it
	my $ch_rows = $ch->query_rows('SELECT ' . join(', ', @chx)
		  . " FROM analytics.$t FINAL ORDER BY $order");
	is(scalar @$ch_rows, scalar @$pg_rows, "$t: as many rows in ClickHouse 26 as in PostgreSQL");
	my @diffs;
	for my $i (0 .. $#$pg_rows)
	{
		for my $c (@names)
		{
			my ($a, $b) = ($pg_rows->[$i]{$c}, $ch_rows->[$i]{"v_$c"});
			push @diffs, sprintf("row %d %s: PostgreSQL %.80s, ClickHouse %.80s",
				$i, $c, $json->encode($a), $json->encode($b))
			  unless same_value($kinds{$c}, $a, $b);
		}
	}
	is(scalar @diffs, 0, "$t: every value in ClickHouse 26 equals PostgreSQL's")
	  or diag(join("\n", @diffs));
}

compare($_) for @tables;

is( $ch->query("SELECT country, sum(total), count() FROM analytics.orders FINAL "
		  . "GROUP BY country ORDER BY country FORMAT TSV"),
	psql("SELECT coalesce(country, '\\N'), trim_scale(sum(total)), count(*) FROM orders "
		  . "GROUP BY country ORDER BY country NULLS LAST") =~ s/\|/\t/gr . "\n",
	'orders: revenue by country equals PostgreSQL\'s (FINAL alone)');
is($ch->query_value('SELECT count() FROM analytics.orders FINAL WHERE _deleted'), 0,
	'FINAL leaves out the deleted rows by itself');
is($ch->query_value(q{SELECT count() FROM analytics.orders
	WHERE _commit_ts BETWEEN now64(6) - INTERVAL 1 HOUR AND now64(6)}),
	$ch->query_value('SELECT count() FROM analytics.orders'),
	'_commit_ts is a DateTime64(6) of the commit time');

# ---------------------------------------------------------------------------
# Limits and policies (docs/clickhouse.md)
# ---------------------------------------------------------------------------

# numeric without a fitting Decimal is a String: the exact text, NaN and the
# infinities included.
psql(q{UPDATE types SET anyn = 'Infinity' WHERE id = 1});
psql(q{UPDATE types SET anyn = '-Infinity' WHERE id = 2});
psql(q{UPDATE types SET anyn = '-0.000000000000000000000000000000000000000000000000000000000000000000000000000000123456789' WHERE id = 4});
$r = ship('types', ndjson_of('types'));
is($r->{status}, 200, 'unbounded numeric Infinity, -Infinity and 87 fraction digits: accepted');
compare('types');

# numeric NaN into a Decimal column: refused (never stored as 0 or NULL);
# the request is a permanent rejection (4xx), walship.on_rejected decides.
psql(q{UPDATE types SET amount = 'NaN' WHERE id = 4});
my $nan = ndjson_of('types');
like($nan, qr/"amount": "NaN"/, 'numeric(p,s) NaN is written as the string "NaN"');
$r = ship('types', $nan);
is($r->{status}, 400, '... which a Decimal column refuses: 400 (permanent)');
like($r->{content}, qr/^Code: 27\. DB::Exception: .*amount/s, '... Code 27, naming the column');
psql(q{UPDATE types SET amount = 4 WHERE id = 4});
$r = ship('types', ndjson_of('types'));
is($r->{status}, 200, 'the row fixed in PostgreSQL ships');

# Dates and timestamps outside 1900-01-01 .. 2299-12-31 are stored as the
# range's ends (as infinity and -infinity are).
psql(q{UPDATE types SET d = '1899-12-31', ts = '1812-06-24 00:00:00', tz = '2400-01-01 00:00:00+00',
	da = '{0044-03-15 BC,2300-01-01}' WHERE id = 2});
$r = ship('types', ndjson_of('types'));
is($r->{status}, 200, 'dates and timestamps outside ClickHouse\'s range: accepted');
is($ch->query_value(q{SELECT concat(toString(d), ' ', toString(ts), ' ', toString(tz), ' ',
	arrayStringConcat(arrayMap(x -> toString(x), da), ',')) FROM analytics.types FINAL WHERE id = 2}),
	q{1900-01-01 1900-01-01 00:00:00.000000 2299-12-31 23:59:59.999999 1900-01-01,2299-12-31},
	'... at the ends of the range');
compare('types');

# A NULL array: ClickHouse has no Nullable(Array); it is written as [].
psql(q{INSERT INTO types (id, qty, ta) VALUES (7, 1, NULL)});
$r = ship('types', ndjson_of('types'));
is($r->{status}, 200, 'a NULL array is accepted');
is($ch->query_value(q{SELECT length(ta) FROM analytics.types FINAL WHERE id = 7}),
	'0', '... as []');

# Unchanged TOAST values: the line lacks the column and names it in
# _unchanged; with input_format_skip_unknown_fields=0 (docs/clickhouse.md)
# ClickHouse refuses it instead of storing the column's default.
psql(q{INSERT INTO orders (id, customer, total, note)
       SELECT 300, 'big', 1, string_agg(md5(i::text), '') FROM generate_series(1, 1000) i});
psql('UPDATE orders SET total = 2 WHERE id = 300');
my $toast = ndjson_of('orders');
like($toast, qr/"_unchanged": \["note"\]/, 'default identity: the unchanged TOAST value is not sent');
$r = ship('orders', $toast);
like("$r->{status} $r->{content}", qr/^400 Code: 117\. DB::Exception: .*_unchanged/s,
	'... and ClickHouse 26 refuses the line (400, Code 117, unknown field _unchanged)');
psql(q{INSERT INTO full_rows SELECT 300, string_agg(md5(i::text), ''), 1 FROM generate_series(1, 1000) i});
psql('UPDATE full_rows SET n = 2 WHERE id = 300');
$r = ship('full_rows', ndjson_of('full_rows'));
is($r->{status}, 200, 'REPLICA IDENTITY FULL: the TOASTed value is sent and accepted');
compare('full_rows');

$ch->stop;
$node->stop;
done_testing();
