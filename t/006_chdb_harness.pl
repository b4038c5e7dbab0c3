# Copyright (c) walship developers
#
# t/006_chdb_harness.pl
#	  Tests of the ClickHouse 26 test adapter (t/chdb_http.js over chdb,
#	  through t/WalshipChdb.pm) that t/046 and t/047 rely on, and of the
#	  ClickHouse 26 behaviour walship's clickhouse dialect builds on:
#	  server defaults instead of chdb's, INSERT ... FORMAT JSONEachRow with
#	  plain, gzip and zstd bodies, settings in the URL (for that query only;
#	  an unknown one refused), errors as "Code: N. DB::Exception" with the
#	  server's HTTP status, binary bodies stored byte for byte (RowBinary,
#	  also random ones of several sizes, plain, gzip and zstd),
#	  insert_deduplication_token on a non-replicated MergeTree, the "lost
#	  acknowledgement" hook, and restart with the data kept.  No PostgreSQL
#	  server is needed.  Skipped when chdb could not be installed (the
#	  reason is given), unless WALSHIP_REQUIRE_CHDB=1.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Utils;
use Test::More;

use HTTP::Tiny;
use WalshipChdb;

my ($available, $why) = WalshipChdb->available;
plan skip_all => "ClickHouse 26 (chdb) is not available: $why" unless $available;

my $tmp = PostgreSQL::Test::Utils::tempdir('chdb');
my $ch = WalshipChdb->new(dir => "$tmp/chdb");

# ---------------------------------------------------------------------------
# The adapter and the engine
# ---------------------------------------------------------------------------
my $http = HTTP::Tiny->new(timeout => 30, keep_alive => 0);
is($http->get($ch->url('/ping'))->{content}, "Ok.\n", 'GET /ping answers "Ok."');
like($ch->version, qr/^26\./, 'the engine is ClickHouse 26: ' . $ch->version);
note(sprintf('chdb adapter ready in %.2f s, RSS %s kB', $ch->startup_seconds, $ch->rss_kb // '?'));

# chdb's own defaults are set back to a server's
is($ch->query_value("SELECT getSetting('date_time_input_format')"), 'basic',
	'date_time_input_format is the server default (basic, not best_effort)');
is($ch->query_value("SELECT getSetting('async_insert')"), 'false',
	'async_insert is the server default (0)');
is($ch->query_value("SELECT getSetting('input_format_skip_unknown_fields')"), 'true',
	'input_format_skip_unknown_fields is the server default (1 since 23.x)');

# ---------------------------------------------------------------------------
# Inserts as walship sends them
# ---------------------------------------------------------------------------
$ch->query('CREATE DATABASE shop');
$ch->query(q{CREATE TABLE shop.t (id Int64, s Nullable(String), at DateTime64(6, 'UTC'),
	_version UInt64, _deleted UInt8)
	ENGINE = ReplacingMergeTree(_version, _deleted) ORDER BY id
	SETTINGS non_replicated_deduplication_window = 1000});

my $line = sub {
	my ($id, $v) = @_;
	return qq({"id": $id, "s": "v$v", "at": "2024-02-29 12:34:56.789012", "_version": $v, "_deleted": 0}\n);
};
my $r = $ch->insert(table => 'shop.t', body => $line->(1, 1) . $line->(2, 1));
is($r->{status}, 200, 'plain NDJSON body: 200') or diag($r->{content});
is($r->{content}, '', '... with an empty body');
$r = $ch->insert(table => 'shop.t', body => $line->(3, 1), gzip => 1);
is($r->{status}, 200, 'gzip body: 200') or diag($r->{content});
$r = $ch->insert(table => 'shop.t', body => $line->(4, 1), zstd => 1);
is($r->{status}, 200, 'zstd body: 200') or diag($r->{content});
is($ch->query_value('SELECT count() FROM shop.t'), 4, 'four rows stored');
ok(-d $ch->dir . '/data/metadata', '... in the data directory inside dir');
is($ch->query_value("SELECT toString(at) FROM shop.t WHERE id = 4"),
	'2024-02-29 12:34:56.789012', 'DateTime64(6) keeps the microseconds');

# ReplacingMergeTree(_version, _deleted): FINAL drops deleted rows itself
$ch->insert(table => 'shop.t',
	body => qq({"id": 2, "s": null, "at": "1970-01-01 00:00:00", "_version": 5, "_deleted": 1}\n));
is($ch->query_value('SELECT count() FROM shop.t FINAL'), 3,
	'FINAL leaves out the row whose newest version is deleted');

# ---------------------------------------------------------------------------
# Settings in the URL, for that query only
# ---------------------------------------------------------------------------
my $iso = qq({"id": 10, "s": "x", "at": "2024-02-29T12:34:56.5Z", "_version": 1, "_deleted": 0}\n);
$r = $ch->insert(table => 'shop.t', body => $iso);
is($r->{status}, 400, 'an ISO timestamp with T and Z is refused under basic: 400');
like($r->{content}, qr/^Code: \d+\. DB::Exception: .*\(CANNOT_PARSE_[A-Z_]+\)/s,
	'... with the server\'s error text');
$r = $ch->insert(table => 'shop.t', body => $iso,
	settings => { date_time_input_format => 'best_effort' });
is($r->{status}, 200, '... and taken with &date_time_input_format=best_effort in the URL')
  or diag($r->{content});
is($ch->query_value("SELECT getSetting('date_time_input_format')"), 'basic',
	'the URL\'s setting applied to that query only');
$r = $ch->insert(table => 'shop.t', body => $line->(11, 1), settings => { no_such_setting => 1 });
is($r->{status}, 404, 'an unknown setting: 404');
like($r->{content}, qr/^Code: 115\. DB::Exception: .*no_such_setting/, '... Code: 115');

# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------
$r = $ch->insert(table => 'shop.t', body => qq({"id": "x"}\n));
is($r->{status}, 400, 'a value that does not parse: 400');
like($r->{content}, qr/^Code: \d+\. DB::Exception: /, '... "Code: N. DB::Exception"');
like($r->{headers}{'x-clickhouse-exception-code'} // '', qr/^\d+$/,
	'... and X-ClickHouse-Exception-Code');
$r = $ch->insert(table => 'shop.nope', body => $line->(1, 1));
is($r->{status}, 404, 'an unknown table: 404');
like($r->{content}, qr/^Code: 60\. DB::Exception: /, '... Code: 60');
$r = $ch->request('POST', '/', 'SELEC 1');
is($r->{status}, 400, 'a syntax error: 400');
like($r->{content}, qr/^Code: 62\. DB::Exception: Syntax error/, '... Code: 62');
$r = $ch->request('POST', '/?query=' . WalshipClickHouse::uri_escape('INSERT INTO shop.t FORMAT JSONEachRow'),
	'garbage', { 'Content-Encoding' => 'zstd' });
isnt($r->{status}, 200, 'a body that is not zstd under Content-Encoding: zstd is refused');
like($r->{content}, qr/^Code: \d+\. DB::Exception: .*zstd/, '... saying so');

# ---------------------------------------------------------------------------
# A binary body reaches the engine byte for byte
# ---------------------------------------------------------------------------
$ch->query('CREATE TABLE shop.bin (s String, n UInt32) ENGINE = MergeTree ORDER BY n');
my $bytes = join('', map { chr } 0 .. 255);
my $rowbinary = chr(length($bytes) & 0x7f | 0x80) . chr(length($bytes) >> 7)    # LEB128 256
  . $bytes . pack('V', 7);
$r = $ch->insert(table => 'shop.bin', format => 'RowBinary', body => $rowbinary,
	headers => { 'Content-Type' => 'application/octet-stream' });
is($r->{status}, 200, 'a RowBinary body with every byte value: 200') or diag($r->{content});
is($ch->query_value('SELECT hex(s) FROM shop.bin WHERE n = 7'), uc(unpack('H*', $bytes)),
	'... stored byte for byte (NUL, CR, LF, 0xff included)');
$r = $ch->insert(table => 'shop.bin', format => 'RowBinary', body => $rowbinary, gzip => 1);
is($ch->query_value('SELECT count() FROM shop.bin WHERE s = unhex(\'' . unpack('H*', $bytes) . '\')'), 2,
	'... and so is a gzip RowBinary body');

# Random RowBinary bodies of several sizes, every byte value in their
# strings, plain, gzip and zstd: each row stored exactly.  chdb's raw insert
# takes an INSERT's inline data to end at the first empty line, so a body
# with the bytes "\n\n" anywhere (the first body has them on purpose: an
# Int64 10 followed by a String of ten bytes starting with "\n") was cut
# there ("Attempt to read after eof") and the rest run as SQL.
$ch->query('CREATE TABLE shop.rb (b UInt32, id Int64, v UInt64, s String) ENGINE = MergeTree ORDER BY (b, id)');
my $leb128 = sub {
	my ($n) = @_;
	my $o = '';
	do { $o .= chr(($n & 0x7f) | ($n >= 0x80 ? 0x80 : 0)); $n >>= 7; } while ($n);
	return $o;
};
srand(6006);
my $b = 0;
for my $rows (1, 10, 100, 1000)
{
	for my $enc ('plain', 'gzip', 'zstd')
	{
		$b++;
		my ($body, $want) = ('', '');
		for my $id (1 .. $rows)
		{
			my $s = $b == 1 ? "\n\n\n\n\n\n\n\n\n\n"
			  : join('', map { chr(int(rand(256))) } 1 .. (int(rand(8)) ? int(rand(40)) : int(rand(400))));
			my $v = $b == 1 ? 10 : int(rand(2**32)) * 65536 + int(rand(65536));
			$body .= pack('V', $b) . pack('q<', $id) . pack('Q<', $v) . $leb128->(length $s) . $s;
			$want .= "$id\t$v\t" . uc(unpack('H*', $s)) . "\n";
		}
		$r = $ch->insert(table => 'shop.rb', format => 'RowBinary', body => $body,
			$enc eq 'plain' ? () : ($enc => 1));
		is($r->{status}, 200, "random RowBinary body $b ($rows rows, " . length($body)
			  . " bytes, $enc" . ($body =~ /\n\n/ ? ', with "\n\n"' : '') . '): 200')
		  or diag($r->{content});
		is($ch->query("SELECT id, v, hex(s) FROM shop.rb WHERE b = $b ORDER BY id FORMAT TabSeparated"),
			$want, '... every row stored exactly');
	}
}
is($ch->inserts->[-1]{query}, 'INSERT INTO shop.rb FORMAT RowBinary',
	'inserts() reports the query as sent');

# a text body with an empty line: three rows, the last one not run as SQL
$ch->query('CREATE TABLE shop.lines (s String) ENGINE = MergeTree ORDER BY s');
$r = $ch->insert(table => 'shop.lines', format => 'TabSeparated', body => "a\n\nb\n");
is($r->{status}, 200, 'a TabSeparated body with an empty line: 200') or diag($r->{content});
is($ch->query_value(q{SELECT arrayStringConcat(groupArray(s), ',') FROM (SELECT s FROM shop.lines ORDER BY s)}),
	',a,b', '... all three rows stored');

# ---------------------------------------------------------------------------
# insert_deduplication_token (non_replicated_deduplication_window > 0)
# ---------------------------------------------------------------------------
$ch->query(q{CREATE TABLE shop.d (id Int64, _version UInt64) ENGINE = ReplacingMergeTree(_version)
	ORDER BY id SETTINGS non_replicated_deduplication_window = 1000});
for (1 .. 2)
{
	$ch->insert(table => 'shop.d', body => qq({"id": 1, "_version": 1}\n{"id": 2, "_version": 1}\n),
		settings => { insert_deduplication_token => 'batch-1' });
}
is($ch->query_value('SELECT count() FROM shop.d'), 2,
	'the same token twice: the second insert is dropped (count() without FINAL)');
$ch->insert(table => 'shop.d', body => qq({"id": 1, "_version": 1}\n{"id": 2, "_version": 1}\n),
	settings => { insert_deduplication_token => 'batch-2' });
is($ch->query_value('SELECT count() FROM shop.d'), 4, 'another token: stored again');
$ch->query(q{CREATE TABLE shop.nodedup (id Int64) ENGINE = MergeTree ORDER BY id});
for (1 .. 2)
{
	$ch->insert(table => 'shop.nodedup', body => qq({"id": 1}\n),
		settings => { insert_deduplication_token => 'same' });
}
is($ch->query_value('SELECT count() FROM shop.nodedup'), 2,
	'without non_replicated_deduplication_window the token deduplicates nothing');

# ---------------------------------------------------------------------------
# A lost acknowledgement
# ---------------------------------------------------------------------------
$ch->lose_acks(1);
my $before = scalar @{ $ch->inserts };
$r = $ch->insert(table => 'shop.d', body => qq({"id": 9, "_version": 1}\n));
is($r->{status}, 500, 'lose_acks(1): the next INSERT answers 500');
like($r->{content}, qr/^Code: 209\. DB::Exception: /, '... with a ClickHouse error text');
is($ch->query_value('SELECT count() FROM shop.d WHERE id = 9'), 1, '... but its row is stored');
my $ins = $ch->inserts;
is(scalar @$ins, $before + 1, 'inserts() lists it');
ok(!$ins->[-1]{acknowledged}, '... as not acknowledged');
$r = $ch->insert(table => 'shop.d', body => qq({"id": 10, "_version": 1}\n));
is($r->{status}, 200, 'the INSERT after it is acknowledged again');
ok($ch->inserts->[-1]{acknowledged}, '... and listed as acknowledged');
$ch->lose_acks(1, 'close');
$r = $ch->insert(table => 'shop.d', body => qq({"id": 11, "_version": 1}\n));
is($r->{status}, 599, 'mode close: the connection closes without an answer');
is($ch->query_value('SELECT count() FROM shop.d WHERE id = 11'), 1, '... the row is stored');
is_deeply($ch->inserts->[-1]{settings}, {}, 'inserts() reports the settings of each INSERT');

# ---------------------------------------------------------------------------
# Restart with the data kept
# ---------------------------------------------------------------------------
my $count = $ch->query_value('SELECT count() FROM shop.t');
is($ch->stop, 0, 'stop: the adapter exits with status 0');
$ch->start;
is($ch->query_value('SELECT count() FROM shop.t'), $count, 'restart: the rows are still there');

done_testing();
