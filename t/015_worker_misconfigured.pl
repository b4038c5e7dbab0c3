# Copyright (c) 2026, walship developers
#
# A misconfigured server: the worker reports what is wrong in
# walship.status and the log, keeps running (no crash loop), and starts
# shipping as soon as the configuration is fixed.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WalshipHttpSink;
use WalshipTest;

my $sink = WalshipHttpSink->new(dir => PostgreSQL::Test::Utils::tempdir());

my $node = PostgreSQL::Test::Cluster->new('misconfigured');
$node->init;    # wal_level = minimal
my $endpoint = $sink->url('/ingest');
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'walship'
max_wal_senders = 0
walship.endpoint = '$endpoint'
walship.publication = 'misconf_pub'
walship.batch_max_delay = 20ms
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION walship;
CREATE TABLE items (id int PRIMARY KEY, v text);
CREATE PUBLICATION misconf_pub FOR TABLE items;
});
$node->reload;    # wakes the worker

sub status_of
{
	return walship_status($node,
		q{state || '|' || coalesce(last_error, '') || '|' || coalesce(worker_pid, 0)});
}

# 1. wal_level too low
ok($node->poll_query_until('postgres',
		q{SELECT state = 'error' AND last_error = 'walship needs wal_level = logical' FROM walship.status}),
	'wal_level = minimal: the status says walship needs wal_level = logical');
my (undef, undef, $pid) = split /\|/, status_of();
sleep 6;    # longer than the worker's restart interval
my ($state, undef, $pid2) = split /\|/, status_of();
is($pid2, $pid, 'wal_level = minimal: the worker keeps running, no crash loop');
is($state, 'error', 'wal_level = minimal: still reported');
like(slurp_file($node->logfile), qr/WARNING:  walship: walship needs wal_level = logical/,
	'wal_level = minimal: the log says so');

# 2. walship not allowed as an output plugin (only servers that have
# output_plugin_libraries, 15.19 and later, can refuse it)
$node->append_conf('postgresql.conf', q{
wal_level = logical
max_wal_senders = 4
max_replication_slots = 4
} . plugin_libraries_conf('pgoutput, test_decoding'));
$node->restart;
SKIP:
{
	skip 'this server has no output_plugin_libraries', 3
	  if plugin_libraries_conf() eq '';
	ok($node->poll_query_until('postgres',
			q{SELECT state = 'error' AND last_error = 'walship is not listed in output_plugin_libraries' FROM walship.status}),
		'output_plugin_libraries without walship: reported');
	is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_replication_slots}), '0',
		'output_plugin_libraries without walship: no slot was created');
	($state, undef, $pid) = split /\|/, status_of();
	sleep 6;
	($state, undef, $pid2) = split /\|/, status_of();
	is($pid2, $pid, 'output_plugin_libraries without walship: no crash loop');
}

# 3. fixed with a reload: shipping starts
$node->append_conf('postgresql.conf', plugin_libraries_conf());
$node->reload;
ok($node->poll_query_until('postgres',
		q{SELECT state = 'streaming' AND last_error IS NULL FROM walship.status}),
	'after the fix: streaming, error cleared');
$node->safe_psql('postgres', q{INSERT INTO items VALUES (1, 'one')});
ok($sink->wait_for(sub {
			grep { ($_->{status} // 0) == 204 } @{ $_[0] }
		}, 60),
	'after the fix: the change is delivered');
my ($body) = $sink->bodies(status => [204]);
like($body, qr/"after": \{"id": 1, "v": "one"\}/, 'after the fix: with its content');

# 4. settings that cannot work together: per-table URLs with the binary format
my $per_table = $sink->url('/t/{table}');
$node->append_conf('postgresql.conf', qq{
walship.format = 'binary'
walship.endpoint = '$per_table'
});
$node->reload;
my $seen = $sink->last_seq;
$node->safe_psql('postgres', q{INSERT INTO items VALUES (2, 'two')});
ok($node->poll_query_until('postgres',
		q{SELECT state = 'error' AND last_error LIKE '%placeholders, which need walship.format = ndjson%' FROM walship.status}),
	'binary format with {table} in the endpoint: reported');
is($sink->last_seq, $seen, 'binary format with {table} in the endpoint: nothing sent');
$node->append_conf('postgresql.conf', q{
walship.format = 'ndjson'
});
$node->reload;
ok($sink->wait_for(sub {
			grep { $_->{seq} > $seen && $_->{path} eq '/t/items' && ($_->{status} // 0) == 204 } @{ $_[0] }
		}, 60),
	'after the fix: the change goes to the table\'s URL');
ok($node->poll_query_until('postgres',
		q{SELECT state = 'streaming' AND last_error IS NULL FROM walship.status}),
	'after the fix: streaming, error cleared');

$node->stop;
$sink->stop;
done_testing();
