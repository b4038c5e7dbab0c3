# Copyright (c) walship developers
#
# t/074_clickhouse_failover_rowbinary.pl
#	  t/073_clickhouse_failover.pl with walship.format = 'rowbinary': after
#	  the failover the resync's ALTER TABLE ... DELETE runs with RowBinary
#	  requests too, and FINAL equals the new primary's tables.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

# loaded here, at compile time: their INIT blocks must run before the test
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WalshipClickHouse;
use WalshipTest;

$ENV{WALSHIP_TEST_FAILOVER_FORMAT} = 'rowbinary';
my $test = "$FindBin::RealBin/073_clickhouse_failover.pl";
do $test;
die "$test: $@" if $@;
