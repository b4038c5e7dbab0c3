# Copyright (c) walship developers
#
# t/005_clickhouse_harness.pl
#	  Tests of the throwaway ClickHouse server (t/WalshipClickHouse.pm) that
#	  the end-to-end tests and the demo rely on, and of the ClickHouse 18.16
#	  behaviour walship builds on: INSERT ... FORMAT JSONEachRow with an
#	  NDJSON body, plain and gzip (no enable_http_compression needed for
#	  request bodies), settings in the URL, the status and exception text of
#	  permanent errors, ReplacingMergeTree(_version) read with FINAL, stop,
#	  restart with the data kept, and the watchdog that stops the server
#	  when the test process dies.  No PostgreSQL server is needed.  Skipped
#	  only when clickhouse-server is not installed.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Utils;
use Test::More;

use HTTP::Tiny;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use WalshipClickHouse;

my ($available, $why) = WalshipClickHouse->available;
plan skip_all => "clickhouse-server is not installed: $why" unless $available;

my $tmp = PostgreSQL::Test::Utils::tempdir('clickhouse');
my $ch = WalshipClickHouse->new(dir => "$tmp/ch");
my $dir = $ch->dir;

# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------
like($ch->http_port, qr/^[1-9][0-9]*$/, 'HTTP port picked');
like($ch->tcp_port, qr/^[1-9][0-9]*$/, 'native port picked');
isnt($ch->http_port, $ch->tcp_port, 'two different ports');
is($ch->url('/ping'), 'http://127.0.0.1:' . $ch->http_port . '/ping', 'url()');
is($ch->url('x?y=1'), 'http://127.0.0.1:' . $ch->http_port . '/x?y=1', 'url() adds the slash');
my $http = HTTP::Tiny->new(timeout => 30, keep_alive => 0);
is($http->get($ch->url('/ping'))->{content}, "Ok.\n", 'GET /ping answers "Ok."');
like($ch->version, qr/^[0-9]+\.[0-9]+/, 'version() is ' . $ch->version);
note(sprintf('clickhouse-server %s (%s) ready in %.2f s, RSS %s kB',
	$ch->version, join(' ', $ch->server_command), $ch->startup_seconds, $ch->rss_kb // '?'));
ok(-d "$dir/data/metadata", 'data directory inside dir');
ok(-s "$dir/log/clickhouse-server.log", 'server log inside dir');
like(slurp_file("$dir/config.xml"), qr{<listen_host>127\.0\.0\.1</listen_host>},
	'listens on 127.0.0.1 only');
unlike(slurp_file("$dir/config.xml"), qr{interserver_http_port}, 'no interserver port');
is($ch->query_value("SELECT value FROM system.settings WHERE name = 'max_memory_usage'"),
	'2000000000', 'users.xml profile is in effect');
like($ch->query_value('SELECT timezone()'), qr{^(Etc/)?UTC$}, 'server time zone is UTC');

# ---------------------------------------------------------------------------
# A ReplacingMergeTree table as walship's flat shape fills it
# ---------------------------------------------------------------------------
$ch->query('CREATE DATABASE shop');
$ch->query(<<'SQL');
CREATE TABLE shop.orders
(
    id UInt64,
    country String,
    total Decimal(12, 2),
    note Nullable(String),
    tags Array(String),
    _version UInt64,
    _deleted UInt8
)
ENGINE = ReplacingMergeTree(_version)
ORDER BY id
SQL
is($ch->query_value("SELECT engine FROM system.tables WHERE database = 'shop' AND name = 'orders'"),
	'ReplacingMergeTree', 'table created');

sub ndjson { return join('', map { "$_\n" } @_); }

my $batch1 = ndjson(
	'{"id":1,"country":"FR","total":10.50,"note":null,"tags":[],"_version":100,"_deleted":0}',
	'{"id":2,"country":"DE","total":20.00,"note":"caf\u00e9","tags":["a","b"],"_version":100,"_deleted":0}',
	'{"id":3,"country":"FR","total":5.25,"note":null,"tags":["x"],"_version":100,"_deleted":0}');
my $r = $ch->insert(table => 'shop.orders', body => $batch1);
is($r->{status}, 200, 'plain NDJSON INSERT answered 200');
is($r->{content}, '', 'with an empty body');

# the same through a raw request, to pin the exact URL
$r = $ch->request('POST', '/?query=INSERT%20INTO%20shop.orders%20FORMAT%20JSONEachRow',
	ndjson('{"id":4,"country":"IT","total":1,"note":null,"tags":[],"_version":100,"_deleted":0}'));
is($r->{status}, 200, 'POST /?query=INSERT%20INTO%20shop.orders%20FORMAT%20JSONEachRow');

# gzip request body: 18.16 decompresses it without enable_http_compression
# (that setting is about compressing responses)
my $batch2 = ndjson(
	'{"id":1,"country":"FR","total":11.50,"note":"updated","tags":[],"_version":200,"_deleted":0}',
	'{"id":3,"country":"FR","total":5.25,"note":null,"tags":["x"],"_version":200,"_deleted":1}',
	'{"id":5,"country":"DE","total":7.00,"note":null,"tags":[],"_version":200,"_deleted":0}');
$r = $ch->insert(table => 'shop.orders', body => $batch2, gzip => 1);
is($r->{status}, 200, 'gzip NDJSON INSERT (Content-Encoding: gzip) answered 200')
  or diag($r->{content});
is($ch->query_value("SELECT value FROM system.settings WHERE name = 'enable_http_compression'"),
	'0', 'with enable_http_compression = 0');
$r = $ch->insert(table => 'shop.orders', body => $batch2, gzip => 1,
	settings => { enable_http_compression => 1 });
is($r->{status}, 200, 'gzip with enable_http_compression=1 in the URL works too');

# redelivery of a batch: duplicates collapse under FINAL
$r = $ch->insert(table => 'shop.orders', body => $batch1);
is($r->{status}, 200, 'an old batch delivered again');

my $rows = $ch->query_rows(
	'SELECT id, country, total, note, tags FROM shop.orders FINAL WHERE NOT _deleted ORDER BY id');
is_deeply(
	[ map { [ $_->{id}, $_->{country}, $_->{total}, $_->{note}, join(',', @{ $_->{tags} }) ] } @$rows ],
	[
		[ '1', 'FR', 11.5, 'updated', '' ],
		[ '2', 'DE', 20,   "caf\x{e9}", 'a,b' ],
		[ '4', 'IT', 1,    undef,     '' ],
		[ '5', 'DE', 7,    undef,     '' ],
	],
	'SELECT ... FINAL WHERE NOT _deleted: latest version of each live row');
is($ch->query_value('SELECT count() FROM shop.orders'), 13,
	'without FINAL all 13 inserted rows are there');
is( $ch->query('SELECT country, sum(total) FROM shop.orders FINAL WHERE NOT _deleted '
		. 'GROUP BY country ORDER BY country FORMAT TSV'),
	"DE\t27.00\nFR\t11.50\nIT\t1.00\n",
	'revenue by country over FINAL');
$ch->query('OPTIMIZE TABLE shop.orders FINAL');
is($ch->query_value('SELECT count() FROM shop.orders'), 5,
	'OPTIMIZE FINAL keeps one row per key (deleted ones included)');

# ---------------------------------------------------------------------------
# Errors: status, body, nothing inserted
# ---------------------------------------------------------------------------
my $before = $ch->query_value('SELECT count() FROM shop.orders');

$r = $ch->insert(table => 'shop.orders',
	body => ndjson('{"id":6,"country":"ES","total":1,"note":null,"tags":[],"_version":300,"_deleted":0}',
		'{"id":7,"country":'));
is($r->{status}, 400, 'JSON parse error: 400');
like($r->{content}, qr/^Code: 26, e\.displayText\(\) = DB::Exception: Cannot parse JSON string/,
	'JSON parse error: "Code: 26" text');
ok(!exists $r->{headers}{'x-clickhouse-exception-code'},
	'18.16 sends no X-ClickHouse-Exception-Code header');

$r = $ch->insert(table => 'shop.orders',
	body => ndjson('{"id":8,"country":"ES","total":1,"note":null,"tags":[],"_version":300,"_deleted":0,"extra":1}'));
is($r->{status}, 500, 'unknown column: 500');
like($r->{content}, qr/^Code: 117, .*Unknown field found while parsing JSONEachRow format: extra/,
	'unknown column: "Code: 117" text');
$r = $ch->insert(table => 'shop.orders',
	body => ndjson('{"id":8,"country":"ES","total":1,"note":null,"tags":[],"_version":300,"_deleted":0,"extra":1}'),
	settings => { input_format_skip_unknown_fields => 1 });
is($r->{status}, 200, 'unknown column with input_format_skip_unknown_fields=1 in the URL: 200');

$r = $ch->insert(table => 'shop.orders',
	body => ndjson('{"id":9,"country":"ES","total":"1.00","note":null,"tags":[],"_version":300,"_deleted":0}'));
is($r->{status}, 500, 'Decimal as a JSON string (type mismatch): 500');
like($r->{content}, qr/^Code: 27, /, 'type mismatch: "Code: 27" text');

$r = $ch->insert(table => 'shop.nope', body => ndjson('{"id":1}'));
is($r->{status}, 404, 'unknown table: 404');
like($r->{content}, qr/^Code: 60, .*Table shop\.nope doesn't exist/, 'unknown table: "Code: 60" text');
$r = $ch->insert(table => 'nodb.orders', body => ndjson('{"id":1}'));
is($r->{status}, 404, 'unknown database: 404');
like($r->{content}, qr/^Code: 81, /, 'unknown database: "Code: 81" text');

is($ch->query_value('SELECT count() FROM shop.orders'), $before + 1,
	'failed INSERTs inserted nothing (only the skip_unknown_fields one counted)');

eval { $ch->query('SELECT * FROM shop.nope'); };
like($@, qr/HTTP 404 .*Code: 60, .*doesn't exist/, 'query() dies with the exception text');

# keep-alive: several requests over one connection
my $ka = HTTP::Tiny->new(keep_alive => 1, timeout => 30);
my @statuses;
for my $i (1 .. 3)
{
	my $res = $ka->request('POST', $ch->insert_url('shop.orders'),
		{ content => ndjson(qq({"id":${\ (100 + $i)},"country":"KA","total":1,"note":null,"tags":[],"_version":1,"_deleted":0})) });
	push @statuses, $res->{status};
}
is_deeply(\@statuses, [ 200, 200, 200 ], 'three INSERTs on one keep-alive connection');
undef $ka;

# ---------------------------------------------------------------------------
# stop, restart with the data, watchdog
# ---------------------------------------------------------------------------
my $pid = $ch->pid;
my $t0 = time;
is($ch->stop, 0, 'stop(): clean exit');
note(sprintf('stopped in %.2f s', time - $t0));
ok(!kill(0, $pid), 'server process is gone');
is($http->get($ch->url('/ping'))->{status}, 599, 'nothing answers on the port any more');

$ch->start;
is($ch->query_value('SELECT count() FROM shop.orders FINAL WHERE NOT _deleted'), 8,
	'restart on the same directory keeps the data');
$ch->stop;

# A test process that dies without stopping its server: the watchdog stops it.
# alive: signalable and not a zombie waiting for its reaper
sub alive
{
	my ($p) = @_;
	return 0 unless $p && kill(0, $p);
	open(my $fh, "<", "/proc/$p/stat") or return 0;
	my $stat = <$fh>;
	return ($stat =~ /\) (\S) / && $1 ne "Z") ? 1 : 0;
}

my $pidfile = "$tmp/orphan.pid";
my $child = fork;
die "fork: $!" unless defined $child;
if ($child == 0)
{
	my $orphan = WalshipClickHouse->new(dir => "$tmp/orphan");
	open(my $fh, '>', "$pidfile.tmp") or POSIX::_exit(1);
	print $fh $orphan->pid, "\n";
	close $fh;
	rename("$pidfile.tmp", $pidfile);
	sleep 600;
	POSIX::_exit(0);
}
my $deadline = time + 60;
sleep 0.1 until -s $pidfile || time > $deadline;
my $orphan_pid = -s $pidfile ? slurp_file($pidfile) : undef;
chomp $orphan_pid if defined $orphan_pid;
ok(alive($orphan_pid), 'a child process started its own server');
kill 'KILL', $child;
waitpid($child, 0);
$deadline = time + 60;
sleep 0.1 while alive($orphan_pid) && time < $deadline;
ok($orphan_pid && !alive($orphan_pid), 'its server stopped after the child was killed -9');
kill("KILL", $orphan_pid) if alive($orphan_pid);    # never leave it behind

done_testing();
