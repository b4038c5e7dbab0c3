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

use WalshipChdb;
use WalshipTest;
use WalshipTypes;

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

sub psql { return $node->safe_psql('postgres', $_[0]); }

# The endpoint settings docs/clickhouse.md asks for
my %settings = (input_format_skip_unknown_fields => 0);

# ---------------------------------------------------------------------------
# Tables (as t/045), each with its own publication and slot
# ---------------------------------------------------------------------------
my @tables = @TYPE_TABLES;
psql(type_tables_sql());
create_type_slots($node);

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
psql(type_workload_sql());

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

# no WHERE NOT _deleted: ReplacingMergeTree(_version, _deleted) does it
sub compare
{
	my ($t) = @_;
	compare_table($node, $ch, $t, dialect => 'clickhouse',
		from => "analytics.$t FINAL", target => 'ClickHouse 26');
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
