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

use WalshipClickHouse;
use WalshipTest;
use WalshipTypes;

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

sub psql { return $node->safe_psql('postgres', $_[0]); }

# ---------------------------------------------------------------------------
# Tables, each with its own publication and slot (a flat line does not name
# its table: the worker sends one request per table, and so does this test)
# ---------------------------------------------------------------------------
my @tables = @TYPE_TABLES;
psql(type_tables_sql());
create_type_slots($node);

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
psql(type_workload_sql());

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

sub compare
{
	my ($t) = @_;
	compare_table($node, $ch, $t, dialect => 'clickhouse_18',
		from => "analytics.$t FINAL WHERE NOT _deleted", target => 'ClickHouse');
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
