# Copyright (c) walship developers
#
# t/000_http_sink.pl
#	  Tests of the test HTTP endpoint itself (t/http_sink.py through
#	  t/WalshipHttpSink.pm), which the worker's TAP tests rely on: decoding
#	  of plain, gzip, zstd and chunked bodies, what is recorded (and that a
#	  token is not), keep-alive, scripted statuses, Retry-After and extra
#	  headers, dropped and reset connections, delayed answers overtaken by
#	  later requests, "down" mode, stop and restart on the same port.  No
#	  PostgreSQL server is needed.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Utils;
use Test::More;

use Digest::SHA qw(sha256_hex);
use HTTP::Tiny;
use IO::Compress::Gzip qw(gzip $GzipError);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use WalshipHttpSink;

my $tmp = PostgreSQL::Test::Utils::tempdir('http_sink');
my $sink = WalshipHttpSink->new(dir => "$tmp/sink");

like($sink->port, qr/^[1-9][0-9]*$/, 'sink listens on a port');
is($sink->url('/ingest?x=1'), 'http://127.0.0.1:' . $sink->port . '/ingest?x=1',
	'url()');

# POSTs $body to $path; returns the HTTP::Tiny response.
sub post
{
	my ($path, $body, %headers) = @_;
	my $http = delete $headers{_http} // HTTP::Tiny->new(timeout => 30);
	return $http->request('POST', $sink->url($path),
		{ content => $body, headers => \%headers });
}

sub last_request { my @r = $sink->requests; return $r[-1]; }

# ---------------------------------------------------------------------------
# Bodies and headers
# ---------------------------------------------------------------------------
my $token = 'Bearer s3cr3t-t0ken-value';
my $plain = join('', map { "{\"id\":$_,\"op\":\"I\"}\n" } 1 .. 50) . "\x00\xff binary tail";
my $res = post('/db/orders?q=1', $plain,
	'Content-Type' => 'application/x-ndjson',
	'Walship-Batch-Id' => 'slot1-0/16B3748-1',
	'User-Agent' => 'walship-test/1.0',
	'Authorization' => $token,
	'X-Extra' => 'extra-value');
is($res->{status}, 204, 'plain POST answered with the default 204');
my $r = last_request();
is($r->{seq}, 1, 'first request has seq 1');
is($r->{method}, 'POST', 'method recorded');
is($r->{path}, '/db/orders?q=1', 'path and query recorded');
is($r->{content_type}, 'application/x-ndjson', 'Content-Type recorded');
is($r->{batch_id}, 'slot1-0/16B3748-1', 'Walship-Batch-Id recorded');
is($r->{user_agent}, 'walship-test/1.0', 'User-Agent recorded');
is($r->{headers}{'x-extra'}, 'extra-value', 'other headers recorded');
ok($r->{auth_present}, 'Authorization presence recorded');
is($r->{auth_sha256}, sha256_hex($token), 'Authorization recorded as its SHA-256');
is(WalshipHttpSink::auth_sha256($token), sha256_hex($token), 'auth_sha256 helper');
ok(!exists $r->{headers}{authorization}, 'Authorization not among the headers');
is($r->{content_encoding}, undef, 'no Content-Encoding');
is($r->{body_len}, length($plain), 'body length recorded');
is($r->{body_file}, 'bodies/1.bin', 'body file name recorded');
is($sink->body(1), $plain, 'plain body stored byte for byte');
ok($r->{t_received} > 0 && $r->{t_answered} >= $r->{t_received},
	'receive and answer times recorded');
is($r->{status}, 204, 'answered status recorded');
is($r->{action}, 'respond', 'action is respond');
my $everything = slurp_file("$tmp/sink/requests.jsonl") . slurp_file("$tmp/sink/sink.log");
unlike($everything, qr/s3cr3t/, 'the token appears neither in requests.jsonl nor in the log');

# gzip
my $gz;
gzip(\$plain => \$gz) or die "gzip: $GzipError";
$res = post('/gz', $gz, 'Content-Encoding' => 'gzip');
is($res->{status}, 204, 'gzip POST answered');
$r = last_request();
is($r->{content_encoding}, 'gzip', 'gzip Content-Encoding recorded');
is($r->{wire_len}, length($gz), 'wire length is the compressed length');
is($sink->body($r->{seq}), $plain, 'gzip body stored decompressed');

# zstd, two concatenated frames (the CLI compresses)
sub zstd_compress
{
	my ($data) = @_;
	my $in = "$tmp/zin";
	open(my $fh, '>:raw', $in) or die $!;
	print $fh $data;
	close $fh;
	my $out = `zstd -q -c "$in"`;
	die "zstd failed" if $? != 0;
	return $out;
}
my $zst = zstd_compress(substr($plain, 0, 100)) . zstd_compress(substr($plain, 100));
$res = post('/zs', $zst, 'Content-Encoding' => 'zstd');
is($res->{status}, 204, 'zstd POST answered');
$r = last_request();
is($r->{content_encoding}, 'zstd', 'zstd Content-Encoding recorded');
is($sink->body($r->{seq}), $plain, 'zstd body (two frames) stored decompressed');
# the python3-zstandard module is used when installed (test/run-all.sh
# installs it), else the zstd CLI
my $have_module = system(WalshipHttpSink::_python(), '-c', 'import zstandard') == 0;
like(slurp_file("$tmp/sink/sink.log"),
	$have_module ? qr/zstd via module/ : qr/zstd via CLI/,
	'zstd decoded with the ' . ($have_module ? 'module' : 'CLI'));

# a body that does not decode is answered 400 and kept raw
$res = post('/bad', "not gzip at all", 'Content-Encoding' => 'gzip');
is($res->{status}, 400, 'undecodable body answered 400');
$r = last_request();
like($r->{error}, qr/decod/, 'decoding error recorded');
ok(-f "$tmp/sink/bodies/$r->{seq}.raw", 'undecodable body kept raw');

# keep-alive: two requests on one connection
my $ka = HTTP::Tiny->new(timeout => 30, keep_alive => 1);
post('/ka', 'one', _http => $ka);
post('/ka', 'two', _http => $ka);
my @r = $sink->requests;
is($r[-1]{connection}, $r[-2]{connection}, 'keep-alive: same connection');
is_deeply([ $r[-2]{conn_request}, $r[-1]{conn_request} ], [ 1, 2 ],
	'keep-alive: request counter per connection');

# curl: chunked upload, Expect: 100-continue
my $big = 'x' x 200_000;
open(my $bfh, '>', "$tmp/big") or die $!;
print $bfh $big;
close $bfh;
my $code = `curl -sS -o /dev/null -w '%{http_code}' -H 'Transfer-Encoding: chunked' -H 'Expect: 100-continue' --data-binary \@$tmp/big '${\ $sink->url('/chunked') }'`;
is($code, '204', 'curl chunked upload with Expect: 100-continue answered');
$r = last_request();
is($r->{headers}{'transfer-encoding'}, 'chunked', 'chunked transfer recorded');
is($sink->body($r->{seq}), $big, 'chunked body reassembled');

# ---------------------------------------------------------------------------
# Scripted behaviour
# ---------------------------------------------------------------------------
$sink->set_behaviour({
	default => { status => 204 },
	script => [
		{ status => 500, body => 'boom' },
		{ status => 429, retry_after => 2 },
		{ status => 200, headers => { 'X-ClickHouse-Exception-Code' => '27' } },
	] });
my $mark = $sink->last_seq;
$res = post('/s', 'a');
is($res->{status}, 500, 'script entry 0: 500');
is($res->{content}, 'boom', 'script entry 0: response body');
$res = post('/s', 'b');
is($res->{status}, 429, 'script entry 1: 429');
is($res->{headers}{'retry-after'}, '2', 'script entry 1: Retry-After header');
$res = post('/s', 'c');
is($res->{status}, 200, 'script entry 2: 200');
is($res->{headers}{'x-clickhouse-exception-code'}, '27', 'script entry 2: extra header');
$res = post('/s', 'd');
is($res->{status}, 204, 'script exhausted: default');
$res = post('/s', 'e');
is($res->{status}, 204, 'script exhausted: default again');
@r = $sink->requests(since => $mark);
is_deeply([ map { $_->{script_index} } @r ], [ 0, 1, 2, undef, undef ],
	'script_index per request');
is_deeply([ map { $_->{status} } @r ], [ 500, 429, 200, 204, 204 ], 'statuses recorded');
is($sink->script_position, 3, 'position stops at the end of the script');
is_deeply([ $sink->bodies(since => $mark) ], [qw(a b c d e)], 'bodies() in arrival order');
is_deeply([ $sink->bodies(since => $mark, status => [ 200, 204 ]) ], [qw(c d e)],
	'bodies(status => ...) keeps only acknowledged ones');

# appending to an exhausted script serves the new entries next
$sink->append_script({ status => 400, body => 'bad row' }, { status => 413 });
is(post('/s', 'f')->{status}, 400, 'appended entry served next');
is(post('/s', 'g')->{status}, 413, 'second appended entry');
is(post('/s', 'h')->{status}, 204, 'then default again');

# a new behaviour starts its script from the top
$sink->set_behaviour({ default => { status => 202 }, script => [ { status => 201 } ] });
is(post('/s', 'i')->{status}, 201, 'new generation: script from entry 0');
is(post('/s', 'j')->{status}, 202, 'new default');
$sink->set_default({ status => 204 });
is(post('/s', 'k')->{status}, 204, 'set_default');

# drop and reset: no response at all
$sink->set_behaviour({ script => [
	{ drop => 1 }, { reset => 1 }, { drop => 1, before_body => 1 } ] });
$mark = $sink->last_seq;
$res = post('/d', 'dropped');
is($res->{status}, 599, 'drop: client gets no response');
$res = post('/d', 'reset');
is($res->{status}, 599, 'reset: client gets no response');
$res = post('/d', 'before body');
is($res->{status}, 599, 'drop before body: client gets no response');
$code = `curl -sS -o /dev/null -w '%{http_code}' --data-binary x '${\ $sink->url('/d') }' 2>/dev/null`;
is($code, '204', 'script exhausted, default (no default given) is 204');
@r = $sink->requests(since => $mark);
is_deeply([ map { $_->{action} } @r ], [qw(drop reset drop respond)], 'actions recorded');
is_deeply([ map { $_->{status} } @r[ 0 .. 2 ] ], [ undef, undef, undef ],
	'no status recorded for dropped requests');
is($sink->body($r[0]{seq}), 'dropped', 'dropped request body was read and stored');
is($r[2]{body_file}, undef, 'nothing stored when dropped before the body');

# ---------------------------------------------------------------------------
# A delayed answer is overtaken by a later request
# ---------------------------------------------------------------------------
$sink->set_behaviour({ default => { status => 204 },
	script => [ { delay_ms => 3000, status => 200 } ] });
$mark = $sink->last_seq;

# Runs a POST in a child process, which writes "status time" to $file.
sub post_in_child
{
	my ($path, $body, $file) = @_;
	my $pid = fork;
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		my $res = HTTP::Tiny->new(timeout => 60)
		  ->request('POST', $sink->url($path), { content => $body });
		open(my $fh, '>', $file);
		printf $fh "%d %.6f\n", $res->{status}, time;
		close $fh;
		POSIX::_exit(0);
	}
	return $pid;
}

my $t0 = time;
my $slow = post_in_child('/slow', 'slow', "$tmp/slow.out");
ok($sink->wait_for(sub { $_[1]->script_position == 1 }, 30), 'slow request arrived');
$res = post('/fast', 'fast');
my $t_fast = time;
is($res->{status}, 204, 'later request answered while the first one waits');
ok($t_fast - $t0 < 3, 'later request did not wait for the delayed one');
is(waitpid($slow, WNOHANG), 0, 'delayed request still in flight');
waitpid($slow, 0);
my ($slow_status, $t_slow) = split ' ', slurp_file("$tmp/slow.out");
is($slow_status, 200, 'delayed request answered 200');
ok($t_slow - $t0 >= 3 - 0.05, 'delayed request answered after its delay');
@r = $sink->requests(since => $mark);
is_deeply([ map { $_->{path} } @r ], [ '/slow', '/fast' ], 'seq follows arrival order');
ok($r[0]{t_answered} > $r[1]{t_answered}, 'answers were out of order');
my @lines = map { $_->{seq} } grep { $_->{seq} > $mark }
  map { JSON::PP::decode_json($_) } split /\n/, slurp_file("$tmp/sink/requests.jsonl");
is_deeply(\@lines, [ $r[1]{seq}, $r[0]{seq} ], 'requests.jsonl is in completion order');

# ---------------------------------------------------------------------------
# Down mode
# ---------------------------------------------------------------------------
$mark = $sink->last_seq;
$sink->set_down(1);
$res = post('/down', 'lost');
is($res->{status}, 599, 'down: no answer');
is($sink->last_seq, $mark, 'down: request not counted');
is(scalar(@{ $sink->refused }), 1, 'down: connection recorded as refused');
$sink->set_down(0);
is(post('/up', 'back')->{status}, 204, 'up again');

# ---------------------------------------------------------------------------
# Stop, restart on the same port; in-flight requests at stop
# ---------------------------------------------------------------------------
my $port = $sink->port;
$sink->set_behaviour({ default => { status => 204 },
	script => [ { delay_ms => 60000, status => 200 }, { status => 503 } ] });
$mark = $sink->last_seq;
my $hung = post_in_child('/hung', 'in flight', "$tmp/hung.out");
ok($sink->wait_for(sub { $_[1]->script_position == 1 }, 30), 'long request arrived');
$t0 = time;
is($sink->stop, 0, 'SIGTERM: sink exits with status 0');
ok(time - $t0 < 5, 'SIGTERM: sink does not wait for requests in flight');
waitpid($hung, 0);
like(slurp_file("$tmp/hung.out"), qr/^599 /, 'request in flight at stop gets no answer');
$r = $sink->request($mark + 1);
is($r->{action}, 'aborted', 'request in flight at stop recorded as aborted');
is($sink->body($mark + 1), 'in flight', 'its body was stored');
is(post('/stopped', 'x')->{status}, 599, 'stopped: connection refused');

$sink->restart;
is($sink->port, $port, 'restart: same port');
ok($sink->is_running, 'restart: running');
$res = post('/again', 'after restart');
is($res->{status}, 503, 'restart: script position survived');
is(post('/again', 'y')->{status}, 204, 'restart: then default');
$r = last_request();
is($r->{seq}, $mark + 3, 'restart: seq continues');

# ---------------------------------------------------------------------------
# zstd through the CLI fallback
# ---------------------------------------------------------------------------
my $sink2 = WalshipHttpSink->new(dir => "$tmp/sink2", zstd_cli => 1);
isnt($sink2->port, $sink->port, 'second sink on its own port');
like(slurp_file("$tmp/sink2/sink.log"), qr/zstd via CLI/, 'second sink uses the zstd CLI');
$res = HTTP::Tiny->new->request('POST', $sink2->url('/z'),
	{ content => $zst, headers => { 'Content-Encoding' => 'zstd' } });
is($res->{status}, 204, 'zstd via CLI answered');
is(($sink2->bodies)[0], $plain, 'zstd via CLI decoded');
my $sink2_pid = $sink2->pid;
undef $sink2;
ok(!kill(0, $sink2_pid), 'DESTROY stops the sink');

is($sink->stop, 0, 'final stop');

done_testing();
