# Copyright (c) walship developers
#
# t/045_clickhouse_types.pl
#	  The ClickHouse target tables that walship.clickhouse_ddl() prints, fed
#	  with what walship.encode_ndjson(records, 'flat', 'clickhouse') makes of
#	  a real workload, on a real ClickHouse 18.16 (t/WalshipClickHouse.pm):
#	  every CREATE TABLE is accepted, every body is inserted (gzip, as the
#	  worker sends it), and SELECT ... FINAL WHERE NOT _deleted equals the
#	  PostgreSQL table column by column, for an orders table, a table with
#	  every mapped type family, a composite primary key, a replica identity
#	  index, and REPLICA IDENTITY FULL.  Also pins down the limits
#	  docs/clickhouse.md documents (NULL arrays, unchanged TOAST values,
#	  Date range, numeric without a fitting Decimal).  No worker: records
#	  come from walship slots through pg_logical_slot_get_binary_changes.
#	  Skipped only when clickhouse-server is not installed.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use JSON::PP;
use WalshipClickHouse;
use WalshipTest;

my ($available, $why) = WalshipClickHouse->available;
plan skip_all => "clickhouse-server is not installed: $why" unless $available;

my $tmp = PostgreSQL::Test::Utils::tempdir('clickhouse');
my $ch = WalshipClickHouse->new(dir => "$tmp/ch");
$ch->query('CREATE DATABASE analytics');

my $node = PostgreSQL::Test::Cluster->new('main');
$node->init(allows_streaming => 'logical');
$node->append_conf('postgresql.conf', plugin_libraries_conf() . q{
timezone = 'UTC'
});
$node->start;

my $json = JSON::PP->new->utf8->canonical->allow_nonref;

sub psql { return $node->safe_psql('postgres', $_[0]); }

# ---------------------------------------------------------------------------
# Tables, each with its own publication and slot (a flat line does not name
# its table: the worker sends one request per table, and so does this test)
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
# The ClickHouse tables, as clickhouse_ddl() prints them
# ---------------------------------------------------------------------------
for my $t (@tables)
{
	my $ddl = psql("SELECT walship.clickhouse_ddl('$t', 'analytics', 'clickhouse_18')");
	like($ddl, qr/ENGINE = ReplacingMergeTree\(_version\)\nORDER BY \(/, "$t: DDL printed");
	my $r = $ch->request('POST', '/', $ddl);
	is($r->{status}, 200, "$t: ClickHouse accepts the CREATE TABLE")
	  or diag("$ddl\n$r->{content}");
}
is($ch->query_value("SELECT sorting_key FROM system.tables WHERE database = 'analytics' AND name = 'events'"),
	'source, seq', 'events: ordered by the replica identity index, not the primary key');
is($ch->query_value("SELECT sorting_key FROM system.tables WHERE database = 'analytics' AND name = 'lines'"),
	'order_id, line', 'lines: ordered by the composite primary key');

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
	return slot_ndjson($node, "s_$t", "p_$t", 'flat', 'clickhouse_18') . "\n";
}

my %body;
for my $t (@tables)
{
	$body{$t} = ndjson_of($t);
	my $r = $ch->insert(table => "analytics.$t", body => $body{$t}, gzip => 1);
	is($r->{status}, 200, "$t: ClickHouse accepts the NDJSON body")
	  or diag($r->{content});
}

# Redelivery (at least once): the same body again changes nothing.
my $r = $ch->insert(table => 'analytics.orders', body => $body{orders}, gzip => 1);
is($r->{status}, 200, 'orders: body delivered a second time');

# ---------------------------------------------------------------------------
# Compare: PostgreSQL's rows and ClickHouse's FINAL WHERE NOT _deleted
# ---------------------------------------------------------------------------

# Per column: name => kind.  Each kind is a PostgreSQL expression and a
# ClickHouse expression ('%s' is the column) that should give equal text.
my %kind = (
	text => [ q{CASE WHEN %1$s IS NOT NULL THEN concat(%1$s) END}, 'toString(%s)' ],
	int => [ '%s::text', 'toString(%s)' ],
	float => [ '%s::float8::text', 'toString(toFloat64(%s))' ],
	# numeric into Float64: NaN is written as null (no Decimal NaN)
	numfloat => [ q{CASE WHEN %1$s <> 'NaN' THEN %1$s::float8::text END}, 'toString(%s)' ],
	us => [
		q{CASE WHEN %1$s = 'infinity' THEN '9223372036854775807'
		       WHEN %1$s = '-infinity' THEN '-9223372036854775808'
		       ELSE (extract(epoch FROM %1$s) * 1000000)::bigint::text END},
		'toString(%s)'
	],
	bool => [ '%s::int::text', 'toString(%s)' ],
	bytea => [ q{encode(%s, 'hex')}, '%s' ],
	array => [ q{array_to_string(%s, ',', 'NULL')},
		q{arrayStringConcat(arrayMap(x -> ifNull(toString(x), 'NULL'), %s), ',')} ],
	boolarray => [ q{array_to_string(%s::int[], ',', 'NULL')},
		q{arrayStringConcat(arrayMap(x -> ifNull(toString(x), 'NULL'), %s), ',')} ],
	usarray => [
		q{array_to_string(ARRAY(SELECT (extract(epoch FROM e) * 1000000)::bigint
		                          FROM unnest(%s) e), ',', 'NULL')},
		q{arrayStringConcat(arrayMap(x -> ifNull(toString(x), 'NULL'), %s), ',')}
	],);

my %columns = (
	orders => [
		id => 'int', customer => 'text', country => 'text', total => 'int',
		created_at => 'us', note => 'text'
	],
	types => [
		id => 'int', qty => 'int', amount => 'int', big => 'numfloat',
		anyn => 'numfloat', neg => 'int', m => 'text', ts => 'us', tz => 'us',
		d => 'text', b => 'bytea', j => 'text', jb => 'text', u => 'text',
		f4 => 'float', f8 => 'float', bo => 'bool', s2 => 'int', i8 => 'int',
		t => 'text', vc => 'text', ch => 'text', tm => 'text', iv => 'text',
		ip => 'text', ia => 'array', ta => 'array', na => 'array',
		ba => 'boolarray', da => 'array', tsa => 'usarray', ua => 'array'
	],
	lines => [ order_id => 'int', line => 'int', sku => 'text', qty => 'int' ],
	events => [ id => 'int', source => 'text', seq => 'int', payload => 'text' ],
	full_rows => [ id => 'int', v => 'text', n => 'int' ],);
my %order_by = (events => 'source, seq', lines => 'order_id, line');

sub same_value
{
	my ($kind, $a, $b) = @_;
	return !defined $a && !defined $b if !defined $a || !defined $b;
	if ($kind =~ /float/)
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
	# psql -A prints one line: the rows as one JSON array
	my $pg_rows = $json->decode(
		psql("SELECT coalesce(json_agg(json_build_object(" . join(', ', @pg)
			  . ") ORDER BY $order), '[]') FROM $t"));
	my $ch_rows = $ch->query_rows('SELECT ' . join(', ', @chx)
		  . " FROM analytics.$t FINAL WHERE NOT _deleted ORDER BY $order");
	is(scalar @$ch_rows, scalar @$pg_rows, "$t: as many rows in ClickHouse as in PostgreSQL");
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
	is(scalar @diffs, 0, "$t: every value in ClickHouse equals PostgreSQL's")
	  or diag(join("\n", @diffs));
}

compare($_) for @tables;

# The question analytics asks.
is( $ch->query("SELECT country, sum(total), count() FROM analytics.orders FINAL "
		  . "WHERE NOT _deleted GROUP BY country ORDER BY country FORMAT TSV"),
	psql("SELECT coalesce(country, '\\N'), sum(total), count(*) FROM orders "
		  . "GROUP BY country ORDER BY country NULLS LAST") =~ s/\|/\t/gr . "\n",
	'orders: revenue by country equals PostgreSQL\'s');

# Redelivered rows are duplicates that FINAL collapses; deleted rows stay as
# tombstones, even after OPTIMIZE ... FINAL, so queries must filter them.
$ch->query('OPTIMIZE TABLE analytics.orders FINAL');
is($ch->query_value('SELECT count() FROM analytics.orders'),
	psql('SELECT count(*) FROM orders')
	  + $ch->query_value('SELECT count() FROM analytics.orders FINAL WHERE _deleted'),
	'orders: after OPTIMIZE FINAL, one row per key: the live ones and the tombstones');
compare('orders');

# ---------------------------------------------------------------------------
# Limits (docs/clickhouse.md)
# ---------------------------------------------------------------------------

# A NULL array: ClickHouse has no Nullable(Array).  Either the dialect writes
# it as [] or ClickHouse rejects the line as a data error (permanent).
psql(q{INSERT INTO types (id, qty, ta) VALUES (7, 1, NULL)});
$r = $ch->insert(table => 'analytics.types', body => ndjson_of('types'), gzip => 1);
if ($r->{status} == 200)
{
	is($ch->query_value(q{SELECT length(ta) FROM analytics.types FINAL WHERE id = 7}),
		'0', 'NULL array stored as []');
}
else
{
	like($r->{content}, qr/^Code: 27, .*expected \[/s,
		'NULL array: rejected by ClickHouse (Code 27), a permanent data error');
}

# Unchanged TOAST values: a default replica identity does not log them, so
# the UPDATE's line leaves the column out and lists it in "_unchanged",
# which is no column of the table: ClickHouse rejects the line.  Under
# REPLICA IDENTITY FULL the value is there and the line goes in.
psql(q{INSERT INTO orders (id, customer, total, note)
       SELECT 300, 'big', 1, string_agg(md5(i::text), '') FROM generate_series(1, 1000) i});
psql('UPDATE orders SET total = 2 WHERE id = 300');
my $toast = ndjson_of('orders');
like($toast, qr/"_unchanged": \["note"\]/, 'default identity: the unchanged TOAST value is not sent');
$r = $ch->insert(table => 'analytics.orders', body => $toast, gzip => 1);
like("$r->{status} $r->{content}", qr/^500 Code: 117, .*Unknown field found.*_unchanged/s,
	'... and ClickHouse rejects the line (Code 117, unknown field _unchanged)');
psql(q{INSERT INTO full_rows SELECT 300, string_agg(md5(i::text), ''), 1 FROM generate_series(1, 1000) i});
psql('UPDATE full_rows SET n = 2 WHERE id = 300');
$r = $ch->insert(table => 'analytics.full_rows', body => ndjson_of('full_rows'), gzip => 1);
is($r->{status}, 200, 'REPLICA IDENTITY FULL: the TOASTed value is sent and accepted');
compare('full_rows');

# Date keeps 1970-01-02 .. 2105-12-31; outside, ClickHouse stores 0000-00-00
# without an error.
psql(q{UPDATE types SET d = '1969-12-31' WHERE id = 2});
$r = $ch->insert(table => 'analytics.types', body => ndjson_of('types'), gzip => 1);
is($r->{status}, 200, 'a date before 1970 is accepted');
is($ch->query_value(q{SELECT toString(d) FROM analytics.types FINAL WHERE id = 2}),
	'0000-00-00', '... but stored as 0000-00-00 (ClickHouse Date range)');

# A numeric NaN in a Decimal column: null, which a NOT NULL Decimal refuses.
psql(q{UPDATE types SET amount = 'NaN' WHERE id = 4});
$r = $ch->insert(table => 'analytics.types', body => ndjson_of('types'), gzip => 1);
is($r->{status}, 200, 'numeric NaN into Nullable(Decimal) is accepted');
is($ch->query_value(q{SELECT isNull(amount) FROM analytics.types FINAL WHERE id = 4}),
	'1', '... as NULL');

$ch->stop;
$node->stop;
done_testing();
