# Copyright (c) 2026, walship developers
#
# walship.clickhouse_database: empty means not set; otherwise a ClickHouse
# database name that needs no quoting, checked by ALTER SYSTEM and at
# reload.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WalshipTest;

my $node = worker_node('chsettings', q{
walship.enabled = off
});
$node->start;

is($node->safe_psql('postgres', 'SHOW walship.clickhouse_database'), '',
	'walship.clickhouse_database is empty (not set) by default');

foreach my $good ('shop', '_Shop_2', 'a' x 127, '')
{
	my ($ret, $out, $err) = $node->psql('postgres',
		"ALTER SYSTEM SET walship.clickhouse_database = '$good'");
	is("$ret|$err", "0|", "'" . substr($good, 0, 12) . "' is accepted");
}

foreach my $bad ('2shop', 'shop.orders', 'shop`; DROP DATABASE x', 'sh op',
	'a' x 128)
{
	my ($ret, $out, $err) = $node->psql('postgres',
		"ALTER SYSTEM SET walship.clickhouse_database = '$bad'");
	like($err, qr/invalid ClickHouse database name .* in "walship.clickhouse_database"/,
		"'" . substr($bad, 0, 12) . "' is refused");
}

$node->safe_psql('postgres', 'ALTER SYSTEM RESET walship.clickhouse_database');

# a bad value in postgresql.conf is refused at reload; the last good one stays
$node->append_conf('postgresql.conf', "walship.clickhouse_database = 'shop'\n");
$node->reload;
ok($node->poll_query_until('postgres',
		q{SELECT current_setting('walship.clickhouse_database') = 'shop'}),
	'a good value applies at reload');
$node->append_conf('postgresql.conf', "walship.clickhouse_database = 'no-dashes'\n");
$node->reload;
ok($node->wait_for_log(qr/invalid ClickHouse database name "no-dashes"/),
	'a bad value at reload is logged');
is($node->safe_psql('postgres', 'SHOW walship.clickhouse_database'), 'shop',
	'a bad value at reload leaves the last good one');

$node->stop;
done_testing();
