# Copyright (c) walship developers
#
# t/065_secrets.pl
#	  Secrets of the shipping worker: headers from walship.headers_file and
#	  HTTP Basic authentication from walship.basic_auth_file arrive; a
#	  secret file that cannot be read at reload keeps the last good value
#	  (no request ever goes out without its Authorization) and is reported
#	  in walship.status until it can be read again; one that cannot be read
#	  at start, or newly named at a reload, ships nothing until it can (the
#	  value from another file is never sent); failing reads leak no memory; credentials in the endpoint's
#	  query string are shown as *** in walship.status and
#	  walship.dead_letter, and warned about once; the check hooks of the
#	  file settings; no secret value ever reaches the server log.
#
# IDENTIFICATION
#	  t/065_secrets.pl

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(usleep);
use WalshipHttpSink;
use WalshipTest;

my $tmp = PostgreSQL::Test::Utils::tempdir('secrets');
my $sink = WalshipHttpSink->new(dir => "$tmp/sink");

my $token1 = 'tok1-SECRET-a8f3c1';
my $token2 = 'tok2-SECRET-77d0e4';
my $hdr_secret = 'hdr-SECRET-5c2b9e';
my $hdr_secret2 = 'hdr2-SECRET-e01f3a';
my $basic_pw = 'pw-SECRET-31f0aa';
my $q_secret = 'qpw-SECRET-0e4d21';
my $sig_secret = 'sig-SECRET-9b7c55';
my $inline_secret = 'inline-SECRET-11aa';
my $url_pw = 'urlpw-SECRET-c3d2e1';
my @secrets = ($token1, $token2, $hdr_secret, $hdr_secret2, $basic_pw, $q_secret, $sig_secret,
	$inline_secret, $url_pw);

my $token_file = "$tmp/token";
my $headers_file = "$tmp/headers";
my $basic_file = "$tmp/basic";

sub write_file
{
	my ($path, $content) = @_;
	open(my $fh, '>', $path) or die "cannot write $path: $!";
	print $fh $content;
	close($fh) or die "cannot write $path: $!";
	return;
}

write_file($token_file, "$token1\n");
write_file($headers_file,
	"# headers for walship\n\nX-ClickHouse-Key: $hdr_secret\r\n  X-Source:  walship-065 \n");

my $query = 'query=INSERT%20INTO%20t%20FORMAT%20JSONEachRow';
my $endpoint = $sink->url('/ingest') . "?$query&password=$q_secret&X-Amz-Signature=$sig_secret";
my $endpoint_shown = $sink->url('/ingest') . "?$query&password=***&X-Amz-Signature=***";

my $node = worker_node('secrets', qq{
walship.endpoint = '$endpoint'
walship.publication = 'pub'
walship.batch_max_delay = 20ms
walship.retry_min_delay = 50ms
walship.on_rejected = 'dead_letter'
walship.auth_token_file = '$token_file'
walship.headers_file = '$headers_file'
walship.headers = 'X-Trace: on; X-Api-Token: $inline_secret'
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION walship;
CREATE TABLE t (id int PRIMARY KEY);
CREATE PUBLICATION pub FOR TABLE t;
});
ok(wait_streaming($node), 'worker streams');

# pg_reload_conf() returns before the postmaster has re-read the files:
# wait for its log line, then give the worker a moment to follow.
sub reload_settled
{
	my $offset = -s $node->logfile;
	$node->reload;
	$node->wait_for_log(qr/received SIGHUP, reloading configuration files/, $offset);
	usleep(150_000);
	return;
}

# Inserts $id and returns the acknowledged request that carried it.
sub ship_row
{
	my ($id) = @_;
	my $mark = $sink->last_seq;
	$node->safe_psql('postgres', "INSERT INTO t VALUES ($id)");
	return $sink->wait_for(
		sub {
			my ($r) = grep { is_2xx($_) && ($sink->body($_->{seq}) // '') =~ /"id": $id\b/ }
			  grep { $_->{seq} > $mark } @{ $_[0] };
			return $r;
		});
}

sub status_row
{
	return $node->safe_psql('postgres',
		q{SELECT state || '|' || coalesce(last_error, '') FROM walship.status});
}

my $bearer1 = WalshipHttpSink::auth_sha256("Bearer $token1");
my $bearer2 = WalshipHttpSink::auth_sha256("Bearer $token2");
my $basic = WalshipHttpSink::auth_sha256('Basic ' . encode_base64("walship:$basic_pw", ''));

# ---------------------------------------------------------------------------
# 1. Headers from walship.headers_file and the bearer token arrive; the
#    endpoint is used as configured but shown with its credentials masked
# ---------------------------------------------------------------------------
{
	my $r = ship_row(1);
	ok($r, 'first row shipped');
	is($r->{auth_sha256}, $bearer1, 'bearer token from walship.auth_token_file');
	is($r->{headers}{'x-clickhouse-key'}, $hdr_secret, 'header from walship.headers_file (CR LF line)');
	is($r->{headers}{'x-source'}, 'walship-065', 'second header from the file, trimmed');
	is($r->{headers}{'x-api-token'}, $inline_secret, 'walship.headers are sent as well');
	is($r->{path}, "/ingest?$query&password=$q_secret&X-Amz-Signature=$sig_secret",
		'the request goes to the configured URL');
	is($node->safe_psql('postgres', 'SELECT endpoint FROM walship.status'), $endpoint_shown,
		'walship.status.endpoint masks credential-like query parameters, keeps the rest');
}

# ---------------------------------------------------------------------------
# 2. walship.dead_letter shows the endpoint masked too
# ---------------------------------------------------------------------------
{
	$sink->append_script({ status => 400, body => "bad request to password=$q_secret" });
	$node->safe_psql('postgres', 'INSERT INTO t VALUES (2)');
	ok($node->poll_query_until('postgres', 'SELECT count(*) = 1 FROM walship.dead_letter'),
		'rejected batch in walship.dead_letter');
	my $dl = $node->safe_psql('postgres',
		q{SELECT endpoint || '|' || error || '|' || response FROM walship.dead_letter});
	like($dl, qr/^\Q$endpoint_shown\E\|/, 'walship.dead_letter.endpoint is masked');
	unlike($dl, qr/\Q$q_secret\E|\Q$sig_secret\E/,
		'walship.dead_letter holds no credential of the URL, not even in the response');
}

# ---------------------------------------------------------------------------
# 3. Reload with the token file unreadable: the old token stays in use
# ---------------------------------------------------------------------------
{
	my $mark = $sink->last_seq;
	write_file($token_file, "$token2\n");
	chmod 0000, $token_file or die "chmod: $!";
	reload_settled();
	ok( $node->poll_query_until('postgres', qq{
SELECT state = 'streaming'
   AND last_error LIKE 'could not open walship.auth_token_file "$token_file": Permission denied; walship keeps using%'
  FROM walship.status}),
		'unreadable token file at reload: reported in last_error, still streaming')
	  or diag(status_row());
	my $r = ship_row(3);
	ok($r, 'row shipped while the token file is unreadable');
	is($r && $r->{auth_sha256}, $bearer1, 'the last good token is still sent');
	my @bare = grep { !$_->{auth_present} } $sink->requests(since => $mark);
	is(scalar(@bare), 0, 'no request went out without Authorization');

	# the file is read again without a reload
	chmod 0600, $token_file or die "chmod: $!";
	ok( $node->poll_query_until('postgres',
			q{SELECT state = 'streaming' AND last_error IS NULL FROM walship.status}),
		'token file readable again: last_error clears')
	  or diag(status_row());
	$r = ship_row(4);
	is($r && $r->{auth_sha256}, $bearer2, 'the new token is sent');
}

# ---------------------------------------------------------------------------
# 3b. Reload naming another token file that cannot be read: the token read
#     from the old file is not sent (it may be meant for another endpoint);
#     nothing is sent until the new file can be read.  A request in flight
#     that fails meanwhile neither hides the reason nor ends state "error",
#     and once the file is read the state clears.
# ---------------------------------------------------------------------------
{
	my $new_token_file = "$tmp/token-new";
	my $mark = $sink->last_seq;
	my $retries = $node->safe_psql('postgres', 'SELECT retries FROM walship.status');
	$sink->append_script({ status => 503, delay_ms => 3000 });
	$node->safe_psql('postgres', 'INSERT INTO t VALUES (30)');
	ok($sink->wait_for(sub { $_[1]->last_seq > $mark }), 'a request is in flight');
	my $in_flight = $sink->last_seq;

	$node->append_conf('postgresql.conf', "walship.auth_token_file = '$new_token_file'\n");
	reload_settled();
	my $missing = qq{last_error LIKE 'could not open walship.auth_token_file "$new_token_file": No such file or directory; walship sends nothing%'};
	ok( $node->poll_query_until('postgres', qq{
SELECT state = 'error' AND $missing FROM walship.status}),
		'token file setting changed to a missing file: state error, the old token not kept')
	  or diag(status_row());

	# the request in flight fails and is to be retried
	ok( $node->poll_query_until('postgres',
			"SELECT retries > $retries FROM walship.status"),
		'the request in flight failed');
	ok( $node->poll_query_until('postgres', qq{
SELECT state = 'error' AND $missing FROM walship.status}),
		'the failed request neither ends state error nor replaces its reason')
	  or diag(status_row());
	# absence cannot be polled for: give the worker time to misbehave
	sleep(1);
	my @sent = $sink->requests(since => $in_flight);
	is(scalar(@sent), 0, 'nothing sent while the new token file is missing');

	write_file($new_token_file, "$token1\n");
	ok( $node->poll_query_until('postgres',
			q{SELECT state = 'streaming' AND last_error IS NULL FROM walship.status}),
		'new token file readable: state and last_error clear')
	  or diag(status_row());
	my $r = $sink->wait_for(
		sub {
			my ($r) = grep { is_2xx($_) && ($sink->body($_->{seq}) // '') =~ /"id": 30\b/ }
			  grep { $_->{seq} > $in_flight } @{ $_[0] };
			return $r;
		});
	is($r && $r->{auth_sha256}, $bearer1, 'the row goes out with the token of the new file');
	my @other = grep { ($_->{auth_sha256} // '') ne $bearer1 } $sink->requests(since => $in_flight);
	is(scalar(@other), 0, 'no request since the change carried the old token');
}

# ---------------------------------------------------------------------------
# 3c. Reading a secret file that keeps failing (every reload, every 5 s)
#     leaks no memory in the worker
# ---------------------------------------------------------------------------

# Bytes used by the worker's memory context "walship worker", from
# pg_log_backend_memory_contexts().
sub worker_context_used
{
	my $offset = -s $node->logfile;
	$node->safe_psql('postgres', q{
SELECT pg_log_backend_memory_contexts(worker_pid) FROM walship.status});
	$node->wait_for_log(qr/walship worker: \d+ total in \d+ blocks; \d+ free \(\d+ chunks\); \d+ used/,
		$offset);
	my $log = substr(slurp_file($node->logfile), $offset);
	my ($used) = $log =~ /walship worker: \d+ total in \d+ blocks; \d+ free \(\d+ chunks\); (\d+) used/;
	return $used;
}
{
	chmod 0000, $headers_file or die "chmod: $!";
	reload_settled();
	ok( $node->poll_query_until('postgres', qq{
SELECT last_error LIKE 'could not open walship.headers_file%' FROM walship.status}),
		'unreadable headers file reported')
	  or diag(status_row());
	my $before = worker_context_used();
	for (1 .. 60)
	{
		$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
		usleep(30_000);
	}
	reload_settled();
	my $after = worker_context_used();
	cmp_ok($after - $before, '<', 4096,
		"60 reloads failing to read a secret file leak no memory ($before -> $after bytes used)");
	chmod 0600, $headers_file or die "chmod: $!";
	ok( $node->poll_query_until('postgres',
			q{SELECT state = 'streaming' AND last_error IS NULL FROM walship.status}),
		'headers file readable again')
	  or diag(status_row());
}

# ---------------------------------------------------------------------------
# 4. A malformed headers file keeps the headers read before
# ---------------------------------------------------------------------------
{
	my $offset = -s $node->logfile;
	write_file($headers_file, "X-ClickHouse-Key: $hdr_secret2\n# ok so far\nX-Broken $hdr_secret2\n");
	reload_settled();
	ok( $node->poll_query_until('postgres', qq{
SELECT last_error LIKE 'invalid line 3 in walship.headers_file "$headers_file"%' FROM walship.status}),
		'malformed line reported by its number')
	  or diag(status_row());
	ok($node->wait_for_log(qr/DETAIL:  Each line must have the form "Name: value"\./, $offset),
		'the log says what is wrong with the line');
	my $r = ship_row(5);
	is($r && $r->{headers}{'x-clickhouse-key'}, $hdr_secret, 'the headers read before are still sent');

	write_file($headers_file, "X-ClickHouse-Key: $hdr_secret2\n");
	reload_settled();
	ok($node->poll_query_until('postgres', 'SELECT last_error IS NULL FROM walship.status'),
		'fixed headers file: last_error clears');
	$r = ship_row(6);
	is($r && $r->{headers}{'x-clickhouse-key'}, $hdr_secret2, 'the new header value is sent');
}

# ---------------------------------------------------------------------------
# 5. HTTP Basic authentication from walship.basic_auth_file
# ---------------------------------------------------------------------------
{
	write_file($basic_file, "walship:$basic_pw\n");
	$node->append_conf('postgresql.conf', qq{
walship.auth_token_file = ''
walship.basic_auth_file = '$basic_file'
});
	reload_settled();
	my $r = ship_row(7);
	is($r && $r->{auth_sha256}, $basic, 'Basic authentication from walship.basic_auth_file');

	# a bearer token as well: which to send is not guessed
	$node->append_conf('postgresql.conf', "walship.auth_token_file = '$token_file'\n");
	reload_settled();
	ok( $node->poll_query_until('postgres', q{
SELECT state = 'error'
   AND last_error LIKE 'walship.auth_token_file and walship.basic_auth_file are both set%'
  FROM walship.status}),
		'token and Basic authentication both set: state error')
	  or diag(status_row());
	$node->append_conf('postgresql.conf', "walship.auth_token_file = ''\n");
	reload_settled();
	ok( $node->poll_query_until('postgres',
			q{SELECT state = 'streaming' AND last_error IS NULL FROM walship.status}),
		'one of them unset: streaming again')
	  or diag(status_row());
	$r = ship_row(70);
	is($r && $r->{auth_sha256}, $basic, 'Basic authentication sent again');

	my $log = slurp_file($node->logfile);
	my @warned = $log =~ /(WARNING:  walship\.endpoint holds credentials)/g;
	is(scalar(@warned), 1, 'credentials in walship.endpoint warned about once, across reloads');
	like($log, qr/WARNING:  walship\.headers holds the credential-like header "X-Api-Token"/,
		'credential-like header in walship.headers warned about by name');
	like($log, qr/walship\.endpoint holds credentials[^\n]*\n(?:[^\n]*\n)?[^\n]*DETAIL:  The URL's query parameter "password" looks like a credential\./,
		'the warning names the query parameter');
}

# ---------------------------------------------------------------------------
# 6. A secret file unreadable at start: nothing is shipped until it can be
#    read
# ---------------------------------------------------------------------------
{
	$node->stop;
	chmod 0000, $basic_file or die "chmod: $!";
	my $mark = $sink->last_seq;
	$node->start;
	ok( $node->poll_query_until('postgres', qq{
SELECT state = 'error'
   AND last_error LIKE 'could not open walship.basic_auth_file "$basic_file": Permission denied; walship sends nothing%'
  FROM walship.status}),
		'unreadable secret file at start: state error, reported')
	  or diag(status_row());
	$node->safe_psql('postgres', 'INSERT INTO t VALUES (8)');
	# absence cannot be polled for: give the worker time to misbehave
	sleep(2);
	is($sink->last_seq, $mark, 'nothing sent while the secret is missing');
	like(status_row(), qr/^error\|/, 'still in state error');

	chmod 0600, $basic_file or die "chmod: $!";
	my $r = $sink->wait_for(
		sub {
			my ($r) = grep { is_2xx($_) && ($sink->body($_->{seq}) // '') =~ /"id": 8\b/ }
			  grep { $_->{seq} > $mark } @{ $_[0] };
			return $r;
		});
	ok($r, 'the row goes out once the file is readable');
	my @other = grep { ($_->{auth_sha256} // '') ne $basic } $sink->requests(since => $mark);
	is(scalar(@other), 0, 'every request since the start carried the Basic authentication');
	ok( $node->poll_query_until('postgres',
			q{SELECT state = 'streaming' AND last_error IS NULL FROM walship.status}),
		'state and last_error clear')
	  or diag(status_row());
}

# ---------------------------------------------------------------------------
# 6b. User and password in the URL (set at start, so the server logs no
#     change): used, never shown, warned about
# ---------------------------------------------------------------------------
{
	$node->stop;
	my $with_userinfo = $endpoint;
	$with_userinfo =~ s{^http://}{http://walship:$url_pw\@};
	$node->append_conf('postgresql.conf', qq{
walship.basic_auth_file = ''
walship.endpoint = '$with_userinfo'
});
	my $offset = -s $node->logfile;
	$node->start;
	ok(wait_streaming($node), 'streaming with credentials in the URL');
	my $r = ship_row(9);
	is($r && $r->{auth_sha256},
		WalshipHttpSink::auth_sha256('Basic ' . encode_base64("walship:$url_pw", '')),
		'the URL\'s user and password are sent');
	is($node->safe_psql('postgres', 'SELECT endpoint FROM walship.status'), $endpoint_shown,
		'walship.status.endpoint leaves out user and password');
	ok($node->wait_for_log(qr/DETAIL:  The URL has a user name or password before the host name\./, $offset),
		'credentials in the URL warned about');
}

# ---------------------------------------------------------------------------
# 7. Check hooks of the file settings
# ---------------------------------------------------------------------------
sub alter_system
{
	my ($setting, $value) = @_;
	my ($out, $err) = ('', '');
	my $rc = $node->psql('postgres', "\\set VERBOSITY verbose\nALTER SYSTEM SET $setting = $value",
		stdout => \$out, stderr => \$err);
	return ($rc, $err);
}
{
	my ($rc, $err) = alter_system('walship.basic_auth_file', q{'walship:hunter2-SECRET'});
	isnt($rc, 0, 'basic_auth_file holding user:password refused');
	like($err, qr/ERROR:  22023: invalid file name in "walship\.basic_auth_file"/, '... errcode and message');
	like($err, qr/DETAIL:  The value looks like the secret itself rather than the name of a file holding it\./,
		'... detail');
	like($err, qr/HINT:  Write the secret into a file that only the operating system user running PostgreSQL can read/,
		'... hint');
	unlike($err, qr/hunter2/, '... without repeating the value');

	($rc, $err) = alter_system('walship.headers_file', q{'X-ClickHouse-Key: hunter2-SECRET'});
	like($err, qr/ERROR:  22023: invalid file name in "walship\.headers_file"/,
		'headers_file holding a header refused');
	unlike($err, qr/hunter2/, '... without repeating the value');

	($rc, $err) = alter_system('walship.auth_token_file', q{E'/tmp/a\nb'});
	like($err, qr/ERROR:  22023: invalid file name in "walship\.auth_token_file".*\nDETAIL:  The file name contains a control character\./s,
		'a file name with a line break refused');

	($rc, $err) = alter_system('walship.headers', q{'X-Key'});
	like($err, qr/ERROR:  22023: invalid header list in "walship\.headers"/, 'walship.headers check hook');

	$node->safe_psql('postgres', 'CREATE ROLE plain LOGIN');
	for my $guc (qw(walship.headers_file walship.basic_auth_file))
	{
		my ($out, $e) = ('', '');
		my $r = $node->psql('postgres', "SHOW $guc", stdout => \$out, stderr => \$e,
			extra_params => [ '-U', 'plain' ]);
		# PostgreSQL 16 reworded it: "permission denied to examine", with
		# the role needed in DETAIL.
		like($e, qr/(?:must be superuser or have privileges of pg_read_all_settings to examine|permission denied to examine) "\Q$guc\E"/,
			"plain user: SHOW $guc refused");
	}

	($rc, $err) = alter_system('walship.headers_file', q{'secrets/walship-headers'});
	is($rc, 0, 'a relative file name is accepted') or diag($err);
	$node->safe_psql('postgres', 'ALTER SYSTEM RESET walship.headers_file');
}

# ---------------------------------------------------------------------------
# 8. No secret value in the server log or walship.status
# ---------------------------------------------------------------------------
{
	my $log = slurp_file($node->logfile);
	for my $s (@secrets)
	{
		unlike($log, qr/\Q$s\E/, "server log does not contain secret $s");
	}
	my $status = $node->safe_psql('postgres', 'SELECT s::text FROM walship.status s');
	unlike($status, qr/SECRET/, 'walship.status shows no secret');
}

done_testing();
