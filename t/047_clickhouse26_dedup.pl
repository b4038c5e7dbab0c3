# Copyright (c) walship developers
#
# t/047_clickhouse26_dedup.pl
#	  Exactly-once rows into ClickHouse 26 (chdb behind t/chdb_http.js) in
#	  the clickhouse dialect: the worker sends every request with an
#	  insert_deduplication_token derived from what it carries, the same on
#	  every retry, and the table walship.clickhouse_ddl() prints has a
#	  non_replicated_deduplication_window, so a request that ClickHouse
#	  stored but whose acknowledgement was lost (the adapter stores the
#	  INSERT and then answers 500, or closes the connection) is retried and
#	  stored once: count() without FINAL equals the number of rows, with
#	  zstd and with gzip bodies.  The tokens of two requests differ, and a
#	  table without the window shows what the token alone does not do.
#	  (With the window, ClickHouse also drops a block whose checksum it has
#	  seen, which walship's byte-identical retries match: the counts hold
#	  without the token too; the token checks fail without it.)
#	  Skipped when chdb could not be installed (unless
#	  WALSHIP_REQUIRE_CHDB=1).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use Cwd qw(abs_path);
use WalshipChdb;
use WalshipTest;

my ($available, $why) = WalshipChdb->available;
plan skip_all => "ClickHouse 26 (chdb) is not available: $why" unless $available;

my $tmp = abs_path(PostgreSQL::Test::Utils::tempdir('chdb_dedup'));
my $ch = WalshipChdb->new(dir => "$tmp/chdb");
$ch->query('CREATE DATABASE shop');

my $endpoint = $ch->insert_url('shop.{table}',
	settings => { input_format_skip_unknown_fields => 0 });
my $node = worker_node('dedup', qq{
walship.database = 'postgres'
walship.publication = 'shop'
walship.endpoint = '$endpoint'
walship.format = 'ndjson'
walship.ndjson_shape = 'flat'
walship.dialect = 'clickhouse'
walship.compression = 'zstd'
walship.batch_max_changes = 10000
walship.batch_max_delay = 20ms
walship.retry_min_delay = 20ms
walship.retry_max_delay = 200ms
});
$node->start;
$node->safe_psql('postgres', q{
CREATE TABLE orders (id bigint PRIMARY KEY, country text NOT NULL, total numeric(12,2) NOT NULL);
CREATE TABLE plain (id bigint PRIMARY KEY, v text);
CREATE PUBLICATION shop FOR TABLE orders, plain;
CREATE EXTENSION walship;
});
$ch->query($node->safe_psql('postgres', q{SELECT walship.clickhouse_ddl('orders', 'shop')}));
# the same table without the deduplication window
my $plain = $node->safe_psql('postgres', q{SELECT walship.clickhouse_ddl('plain', 'shop')});
$plain =~ s/\nSETTINGS non_replicated_deduplication_window = \d+$// or die "no window in:\n$plain";
$ch->query($plain);
ok(wait_streaming($node), 'worker streams to ClickHouse 26');

# Commits $sql, waits until the worker has it acknowledged; returns the
# INSERTs the adapter ran for it.
sub ship
{
	my ($sql, $what) = @_;
	my $before = scalar @{ $ch->inserts };
	$node->safe_psql('postgres', $sql);
	my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	ok(wait_worker_caught_up($node, $lsn), "$what: the worker has it acknowledged");
	my $all = $ch->inserts;
	return [ @$all[ $before .. $#$all ] ];
}

sub tokens { return [ map { $_->{settings}{insert_deduplication_token} // '(none)' } @{ $_[0] } ]; }

# ---------------------------------------------------------------------------
# A lost acknowledgement (500 after the INSERT was stored), zstd
# ---------------------------------------------------------------------------
$ch->lose_acks(1);
my $ins = ship(q{INSERT INTO orders SELECT i, 'DE', i FROM generate_series(1, 50) i},
	'50 rows, first acknowledgement lost');
is(scalar @$ins, 2, 'the request was sent twice: stored, answered 500, retried');
ok(!$ins->[0]{acknowledged} && $ins->[1]{acknowledged}, '... the retry was acknowledged');
like($ins->[0]{settings}{insert_deduplication_token} // '', qr/^walship-\d+-walship-.+-public\.orders-[0-9a-f]{8}$/,
	'the request carries an insert_deduplication_token naming the pipeline, changes and table');
is($ins->[1]{settings}{insert_deduplication_token}, $ins->[0]{settings}{insert_deduplication_token},
	'... the same on the retry');
is($ch->query_value('SELECT count() FROM shop.orders'), 50,
	'stored once: count() without FINAL is 50, not 100');
my $first_token = $ins->[0]{settings}{insert_deduplication_token};

# ---------------------------------------------------------------------------
# Lost twice, the connection dropped without an answer, gzip
# ---------------------------------------------------------------------------
$node->append_conf('postgresql.conf', "walship.compression = 'gzip'\n");
$node->reload;
ok($node->poll_query_until('postgres', q{SELECT current_setting('walship.compression') = 'gzip'}),
	'compression reloaded: gzip');
$ch->lose_acks(2, 'close');
$ins = ship(q{BEGIN;
UPDATE orders SET total = total + 1 WHERE id <= 20;
INSERT INTO orders SELECT i, 'FR', i FROM generate_series(51, 80) i;
DELETE FROM orders WHERE id BETWEEN 41 AND 45;
COMMIT;}, '55 changes, two acknowledgements lost');
is(scalar @$ins, 3, 'the request was sent three times');
is(scalar(grep { $_->{acknowledged} } @$ins), 1, '... and acknowledged once');
is(scalar(@{ [ do { my %u = map { $_ => 1 } @{ tokens($ins) }; keys %u } ] }), 1,
	'... always with the same token');
isnt($ins->[0]{settings}{insert_deduplication_token}, $first_token,
	'another request has another token');
is($ch->query_value('SELECT count() FROM shop.orders'), 50 + 55,
	'stored once: count() without FINAL is 105 (50 + 55 changes), not 215');
is($ch->query_value('SELECT count() FROM shop.orders FINAL'),
	$node->safe_psql('postgres', 'SELECT count(*) FROM orders'),
	'FINAL: as many rows as PostgreSQL');
is($ch->query_value('SELECT sum(total) FROM shop.orders FINAL'),
	$node->safe_psql('postgres', 'SELECT trim_scale(sum(total)) FROM orders'),
	'... with the same total');

# ---------------------------------------------------------------------------
# Without the window the token alone does not deduplicate (why the DDL has it)
# ---------------------------------------------------------------------------
$ch->lose_acks(1);
$ins = ship(q{INSERT INTO plain SELECT i, 'v' FROM generate_series(1, 10) i},
	'10 rows into a table without a deduplication window');
is(scalar @$ins, 2, 'sent twice');
is($ch->query_value('SELECT count() FROM shop.plain'), 20,
	'without non_replicated_deduplication_window the retry is stored again (20 rows)');
is($ch->query_value('SELECT count() FROM shop.plain FINAL'), 10,
	'... duplicates that FINAL collapses (same key and _version)');

$node->stop;
$ch->stop;
done_testing();
