# Copyright (c) walship developers
#
# t/WalshipTypes.pm
#	  The PostgreSQL type table the ClickHouse type tests share
#	  (t/045_clickhouse_types.pl for ClickHouse 18.16,
#	  t/046_clickhouse26_types.pl for ClickHouse 26,
#	  t/048_clickhouse_rowbinary.pl through RowBinary): the tables (orders,
#	  types with every mapped type family, a composite key, a replica
#	  identity index, REPLICA IDENTITY FULL), each with its own publication
#	  and walship slot, the workload that fills them, what ClickHouse should
#	  hold of each column in each dialect (a kind per column: a PostgreSQL
#	  expression and a ClickHouse expression that give equal text), and the
#	  comparison of a ClickHouse table with PostgreSQL's value by value.
#
#	  compare_table() makes the assertions of a comparison; the other
#	  functions make none.
#
# IDENTIFICATION
#	  t/WalshipTypes.pm

package WalshipTypes;

use strict;
use warnings;

use Exporter 'import';
use JSON::PP;
use Test::More;

our @EXPORT = qw(
  @TYPE_TABLES type_tables_sql create_type_slots
  orders_workload_sql types_rows_sql types_changes_sql other_tables_workload_sql
  type_workload_sql compare_table
);

# The tables, in the order the tests create, fill and compare them.
our @TYPE_TABLES = qw(orders types lines events full_rows);

# CREATE EXTENSION walship and the tables; $extra_types_columns (e.g.
# 'dec38 numeric(38,10), ') are more columns of types, before the
# generated one.
sub type_tables_sql
{
	my ($extra_types_columns) = @_;
	$extra_types_columns //= '';
	return <<"SQL";
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
    $extra_types_columns
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
}

# Publication p_T and walship slot s_T for every table T (a flat line does
# not name its table: the worker sends one request per table, and so do
# the tests); calls $each->($t), if given, after each.
sub create_type_slots
{
	my ($node, $each) = @_;
	for my $t (@TYPE_TABLES)
	{
		$node->safe_psql('postgres', "CREATE PUBLICATION p_$t FOR TABLE $t");
		$node->safe_psql('postgres',
			"SELECT 'x' FROM pg_create_logical_replication_slot('s_$t', 'walship')");
		$each->($t) if $each;
	}
	return;
}

# Inserts, updates (of the key too), deletes of orders, and transactions
# that change a row several times, delete and insert it again, or insert
# and delete it.
sub orders_workload_sql
{
	return <<'SQL';
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
SQL
}

# The rows of types: every type family with ordinary values, NULLs, the
# extremes (NaN, infinities, the integer limits, 24:00:00) and empty
# values; then an update, a key change and a delete.
sub types_rows_sql
{
	return <<'SQL';
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
SQL
}

# The changes of types after its rows, whichever rows they are.
sub types_changes_sql
{
	return <<'SQL';
UPDATE types SET t = 'changed', amount = 99.99, ia = '{4,5}' WHERE id = 1;
UPDATE types SET id = 6 WHERE id = 5;
DELETE FROM types WHERE id = 6;
SQL
}

# lines (composite key), events (replica identity index) and full_rows
# (REPLICA IDENTITY FULL): inserts, updates of the key and not, deletes.
sub other_tables_workload_sql
{
	return <<'SQL';
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
}

# The whole workload of t/045 and t/046; $types_rows replaces the rows of
# types (t/048 has its own, with more columns).
sub type_workload_sql
{
	my ($types_rows) = @_;
	return orders_workload_sql() . "\n" . ($types_rows // types_rows_sql())
	  . types_changes_sql() . "\n" . other_tables_workload_sql();
}

# ---------------------------------------------------------------------------
# What ClickHouse should hold, by dialect
# ---------------------------------------------------------------------------

# clickhouse_18 (ClickHouse 18.16): numeric into Float64 or Decimal,
# timestamps as Int64 microseconds, bool as UInt8.
# Per column: name => kind.  Each kind is a PostgreSQL expression and a
# ClickHouse expression ('%s' is the column) that should give equal text.
my %kind_18 = (
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

my %columns_18 = (
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

# clickhouse (ClickHouse 26): Decimal up to 76 digits, DateTime64(6) and
# Date32 within 1900-2299, Bool, json as text.
# (greatest() and least() skip NULLs: a NULL must stay NULL)
my $ts_pg = q{CASE WHEN %1$s IS NOT NULL THEN to_char(greatest(least(%1$s::timestamp,
	'2299-12-31 23:59:59.999999'), '1900-01-01'), 'YYYY-MM-DD HH24:MI:SS.US') END};
my $d_pg = q{CASE WHEN %1$s IS NOT NULL THEN greatest(least(%1$s, '2299-12-31'), '1900-01-01')::text END};
my $arr_ch = q{arrayStringConcat(arrayMap(x -> ifNull(toString(x), 'NULL'), %s), ',')};
my %kind_26 = (
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

my %columns_26 = (
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

my %expected = (
	clickhouse_18 => { kinds => \%kind_18, columns => \%columns_18 },
	clickhouse => { kinds => \%kind_26, columns => \%columns_26 },);

# Equal values of a kind: both undefined, numerically equal floats (NaN
# equals NaN) for the kinds named like float, else equal text.
sub _same_value
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

my $json = JSON::PP->new->utf8->canonical->allow_nonref;

# Compares PostgreSQL's table $t with ClickHouse's $o{from} (e.g.
# 'analytics.orders FINAL WHERE NOT _deleted'), row by row in key order,
# column by column, as dialect $o{dialect} stores them (%expected above).
# Asserts as many rows and equal values, named "$t: ... in $o{target}"
# (e.g. 'ClickHouse 26').
sub compare_table
{
	my ($node, $ch, $t, %o) = @_;
	my %order_by = (events => 'source, seq', lines => 'order_id, line');
	my $kinds = $expected{ $o{dialect} }{kinds} // die "no dialect $o{dialect}";
	my @spec = @{ $expected{ $o{dialect} }{columns}{$t} };
	my (@pg, @chx, @names, %kinds);
	while (my ($c, $k) = splice(@spec, 0, 2))
	{
		push @names, $c;
		$kinds{$c} = $k;
		push @pg, sprintf("'%s', " . $kinds->{$k}[0], $c, $c);
		# an alias named like the column would shadow it in ORDER BY
		push @chx, sprintf($kinds->{$k}[1], "`$c`") . " AS `v_$c`";
	}
	my $order = $order_by{$t} // 'id';
	# psql -A prints one line: the rows as one JSON array
	my $pg_rows = $json->decode(
		$node->safe_psql('postgres',
			"SELECT coalesce(json_agg(json_build_object(" . join(', ', @pg)
			  . ") ORDER BY $order), '[]') FROM $t"));
	my $ch_rows = $ch->query_rows('SELECT ' . join(', ', @chx)
		  . " FROM $o{from} ORDER BY $order");
	is(scalar @$ch_rows, scalar @$pg_rows, "$t: as many rows in $o{target} as in PostgreSQL");
	my @diffs;
	for my $i (0 .. $#$pg_rows)
	{
		for my $c (@names)
		{
			my ($a, $b) = ($pg_rows->[$i]{$c}, $ch_rows->[$i]{"v_$c"});
			push @diffs, sprintf("row %d %s: PostgreSQL %.80s, ClickHouse %.80s",
				$i, $c, $json->encode($a), $json->encode($b))
			  unless _same_value($kinds{$c}, $a, $b);
		}
	}
	is(scalar @diffs, 0, "$t: every value in $o{target} equals PostgreSQL's")
	  or diag(join("\n", @diffs));
	return;
}

1;
