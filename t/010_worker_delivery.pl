# Copyright (c) walship developers
#
# t/010_worker_delivery.pl
#	  The shipping worker against the test HTTP sink (t/WalshipHttpSink.pm)
#	  when everything goes well: startup once the extension and publication
#	  exist; INSERT / UPDATE (also of the key) / DELETE / TRUNCATE delivered
#	  in commit order with the right contents in every format (ndjson
#	  envelope, ndjson flat, binary) and every compression (none, gzip,
#	  zstd); change ids, batch ids, content types and encodings; the bearer
#	  token and extra headers; walship.status counters, lag and
#	  walship.progress; privileges of plain users and of walship_admin;
#	  pause() / resume(); walship.enabled; an idle slot keeping up with
#	  traffic it does not ship; DDL and publication changes mid-stream; bad
#	  settings at reload refused without stopping the pipeline;
#	  pg_stat_activity.
#
# IDENTIFICATION
#	  t/010_worker_delivery.pl

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use JSON::PP;
use Time::HiRes qw(usleep);
use WalshipHttpSink;
use WalshipTest;

my $json = JSON::PP->new->utf8;

my $tmp = PostgreSQL::Test::Utils::tempdir('worker_delivery');
my $sink = WalshipHttpSink->new(dir => "$tmp/sink");

my $token = 'tok-7f3a9c-SECRET-bearer-e21d';
my $token_file = "$tmp/token";
write_file($token_file, "  $token\n");
my $header_secret = 'hdr-SECRET-4b1e0a';

my $node = worker_node('delivery', qq{
walship.endpoint = '${\ $sink->url('/ingest') }'
walship.publication = 'pub'
walship.batch_max_delay = 20ms
walship.auth_token_file = '$token_file'
walship.headers = 'X-Api-Key: $header_secret; X-Source: walship-tap'
});
$node->start;

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
sub write_file
{
	my ($path, $content) = @_;
	open(my $fh, '>', $path) or die "cannot write $path: $!";
	print $fh $content;
	close($fh) or die "cannot write $path: $!";
	return;
}

# pg_reload_conf() returns before the postmaster has re-read the files and
# signalled its children: wait for its log line, then give the worker (which
# wakes on SIGHUP) a moment to process it.
sub reload_settled
{
	my $offset = -s $node->logfile;
	$node->reload;
	$node->wait_for_log(qr/received SIGHUP, reloading configuration files/, $offset);
	usleep(150_000);
	return;
}

# Runs SQL (autocommit, or its own BEGIN/COMMIT) and returns the WAL insert
# position just after it.
sub run_tx
{
	my ($sql) = @_;
	return $node->safe_psql('postgres', "$sql;\nSELECT pg_current_wal_lsn()");
}

sub wait_confirmed
{
	my ($lsn, $what) = @_;
	ok(wait_slot_confirmed($node, $lsn), "slot confirmed up to $lsn ($what)");
	return;
}

my $ts_re = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?\+00:00$/;

# Canonical change entries {op, table, before, after, lsn, seq} from one
# request, per format.  Also returns, for flat, {op, table, row, deleted,
# lsn, seq, version} (version: _version, undef for TRUNCATE lines).
# Structural problems are reported as failed tests.
sub parse_envelope
{
	my ($body, $label) = @_;
	my @out;
	ok($body =~ /\n\z/, "$label: body ends with a newline");
	for my $line (split /\n/, $body)
	{
		my $l = $json->decode($line);
		like($line, qr/^\{"op": "[cudt]", "before": /, "$label: envelope keys in order")
		  if @out == 0;
		my $s = $l->{source};
		my $lsn = $s->{commit_lsn};
		my $id = sprintf('%016X-%d', lsn_num($lsn), $s->{ordinal});
		is($l->{id}, $id, "$label: id is commit LSN and ordinal") if $l->{id} ne $id;
		ok($s->{commit_ts} =~ $ts_re && $s->{xid} =~ /^\d+$/ && $s->{schema} eq 'public',
			"$label: source fields") or diag($line);
		if ($l->{op} eq 't')
		{
			ok(!$s->{cascade} && !$s->{restart_identity}, "$label: truncate flags")
			  or diag($line);
		}
		push @out, {
			op => $l->{op},
			table => $s->{table},
			before => $l->{before},
			after => $l->{after},
			lsn => $lsn,
			seq => $s->{ordinal},
			id => $l->{id} };
	}
	return @out;
}

sub parse_flat
{
	my ($body, $label) = @_;
	my @out;
	ok($body =~ /\n\z/, "$label: body ends with a newline");
	for my $line (split /\n/, $body)
	{
		my $l = $json->decode($line);
		ok($l->{_commit_ts} =~ $ts_re && $l->{_lsn} =~ /^\d+$/ && $l->{_seq} =~ /^\d+$/
			  && ($l->{_op} eq 't' ? !exists $l->{_version} : $l->{_version} =~ /^\d+$/),
			"$label: flat metadata") or diag($line);
		my %row = map { $_ => $l->{$_} } grep { !/^_/ } keys %$l;
		my $e = {
			op => $l->{_op},
			row => ($l->{_op} eq 't' ? undef : \%row),
			deleted => $l->{_deleted},
			lsn => lsn_text($l->{_lsn}),
			seq => $l->{_seq},
			version => $l->{_version} };
		if ($l->{_op} eq 't')
		{
			is($l->{_schema}, 'public', "$label: truncate line names its schema");
			$e->{table} = $l->{_table};
		}
		push @out, $e;
	}
	return @out;
}

sub parse_binary
{
	my ($body, $label) = @_;
	my $hex = unpack('H*', $body);
	my @recs = map { $json->decode($_) } split /\n/,
	  $node->safe_psql('postgres',
		"SELECT r::text FROM walship.decode_stream(decode('$hex', 'hex')) r");
	my @out;
	my ($begins, $commits) = (0, 0);
	for my $r (@recs)
	{
		my $k = $r->{kind};
		$begins++ if $k eq 'begin';
		$commits++ if $k eq 'commit';
		next unless $k =~ /^(insert|update|delete|truncate)$/;
		my @tables;
		if ($k eq 'truncate')
		{
			@tables = @{ $r->{relations} };
		}
		else
		{
			ok(defined $r->{relation},
				"$label: batch carries the RELATION of its changes (self-contained)");
			@tables = ($r->{relation});
		}
		for my $t (@tables)
		{
			my $table = defined $t ? $t : 'UNKNOWN';
			$table =~ s/^public\.//;
			push @out, {
				op => { insert => 'c', update => 'u', delete => 'd', truncate => 't' }->{$k},
				table => $table,
				before => $r->{key} // $r->{old},
				after => $r->{new},
				lsn => $r->{commit_lsn},
				seq => $r->{ordinal} };
		}
	}
	ok($begins >= 1 && $commits >= 1, "$label: binary batch has BEGIN and COMMIT records");
	return @out;
}

my %content_type = (ndjson => 'application/x-ndjson', binary => 'application/vnd.walship.v2');
my $auth_expected = WalshipHttpSink::auth_sha256("Bearer $token");

# Checks the request-level properties of one request of a round and returns
# its canonical entries.
sub check_request
{
	my ($r, $format, $shape, $compression, $label) = @_;
	is($r->{method} . ' ' . $r->{path}, 'POST /ingest', "$label: POST to the endpoint path");
	is($r->{status}, 204, "$label: acknowledged");
	is($r->{error}, undef, "$label: body decoded by the sink");
	is($r->{content_type}, $content_type{$format}, "$label: Content-Type");
	is($r->{content_encoding}, ($compression eq 'none' ? undef : $compression),
		"$label: Content-Encoding");
	like($r->{user_agent} // '', qr{^walship/}, "$label: User-Agent");
	is($r->{auth_sha256}, $auth_expected, "$label: bearer token from walship.auth_token_file");
	is($r->{headers}{'x-api-key'}, $header_secret, "$label: walship.headers header 1");
	is($r->{headers}{'x-source'}, 'walship-tap', "$label: walship.headers header 2");
	my $body = $sink->body($r->{seq});
	my @entries =
		$format eq 'binary' ? parse_binary($body, $label)
	  : $shape eq 'flat' ? parse_flat($body, $label)
	  : parse_envelope($body, $label);
	ok(@entries > 0, "$label: request holds changes");
	if (@entries)
	{
		my $first = "$entries[0]{lsn}:$entries[0]{seq}";
		my $last = "$entries[-1]{lsn}:$entries[-1]{seq}";
		like($r->{batch_id}, qr{^[0-9A-F]+/[0-9A-F]+:\d+\.\.[0-9A-F]+/[0-9A-F]+:\d+$},
			"$label: Walship-Batch-Id format");
		is($r->{batch_id}, "$first..$last",
			"$label: Walship-Batch-Id is first..last change id");
	}
	return @entries;
}

# Envelope lines (parsed) of the acknowledged requests after $since.
sub envelope_changes
{
	my ($since) = @_;
	return map { body_changes($sink, $_->{seq}) } grep { is_2xx($_) } $sink->requests(since => $since);
}

sub wait_for_item
{
	my ($since, $table, $id, $what) = @_;
	my $found = $sink->wait_for(
		sub {
			my @c = grep { $_->{source}{table} eq $table && $_->{after} && $_->{after}{id} == $id }
			  envelope_changes($since);
			return @c ? $c[0] : undef;
		});
	ok($found, $what);
	return $found;
}

sub status { my ($cols) = @_; return walship_status($node, $cols); }

# ---------------------------------------------------------------------------
# Startup: the worker waits for the extension and the publication
# ---------------------------------------------------------------------------
ok( $node->wait_for_log(
		qr/WARNING:  walship: extension "walship" is not installed in database "postgres"/),
	'worker reports the missing extension');

$node->safe_psql('postgres', q{
CREATE EXTENSION walship;
CREATE TABLE items (id int PRIMARY KEY, name text, qty int, price numeric(10,2));
CREATE TABLE other (id int PRIMARY KEY);
CREATE TABLE unpub (id int);
CREATE TABLE evolve (id int PRIMARY KEY, a text);
CREATE TABLE late (id int PRIMARY KEY, v text);
CREATE PUBLICATION pub FOR TABLE items, other, evolve;
});
my $log_offset = -s $node->logfile;
$node->reload;    # wakes the worker, which re-checks at once
ok(wait_streaming($node), 'worker streams once extension and publication exist');
ok($node->wait_for_log(qr/walship created logical replication slot "walship"/, $log_offset),
	'worker created its slot');
is( $node->safe_psql('postgres',
		q{SELECT plugin || ' ' || slot_type || ' ' || database FROM pg_replication_slots WHERE slot_name = 'walship'}),
	'walship logical postgres',
	'slot uses the walship plugin in walship.database');

# 10. pg_stat_activity
is( $node->safe_psql('postgres', q{
SELECT count(*) FROM pg_stat_activity a, walship.status s
 WHERE a.backend_type = 'walship worker' AND a.pid = s.worker_pid AND a.datname = 'postgres'}),
	'1', 'worker shows in pg_stat_activity as "walship worker" with the status pid');

my $worker_pid = status('worker_pid');
my $confirmed_at_start = status('confirmed_lsn');
like($confirmed_at_start, qr{^[0-9A-F]+/[0-9A-F]+$}, 'status has a confirmed LSN');

# ---------------------------------------------------------------------------
# 1. Happy path in every format and compression
# ---------------------------------------------------------------------------
my @formats = ([ 'ndjson', 'envelope' ], [ 'ndjson', 'flat' ], [ 'binary', 'envelope' ]);
my @compressions = qw(none gzip zstd);
my $round = 0;
my %seen_ids;
my $duplicate_ids = 0;
my $last_commit_lsn;
my $last_after;

for my $f (@formats)
{
	my ($format, $shape) = @$f;
	for my $compression (@compressions)
	{
		$round++;
		my $label = $format eq 'binary' ? "binary/$compression" : "$format $shape/$compression";
		# Several requests may be in flight at once (walship.max_inflight,
		# default 4), so they may reach the sink in any order; with 1 they
		# arrive in stream order.
		my $inflight = $compression eq 'none' ? 1 : 4;
		$node->safe_psql('postgres', qq{
ALTER SYSTEM SET walship.format = '$format';
ALTER SYSTEM SET walship.ndjson_shape = '$shape';
ALTER SYSTEM SET walship.compression = '$compression';
ALTER SYSTEM SET walship.max_inflight = $inflight;
});
		reload_settled();

		my $mark = $sink->last_seq;
		my $base = $round * 100;
		my @win = (status('current_lsn'));
		push @win, run_tx(qq{
BEGIN;
INSERT INTO items VALUES ($base + 1, 'n1', 1, 1.50), ($base + 2, 'n2', 2, 2.50);
INSERT INTO unpub VALUES ($base);
INSERT INTO other VALUES ($base + 1);
COMMIT});
		push @win, run_tx("UPDATE items SET qty = qty + 10 WHERE id = $base + 1");
		push @win, run_tx("UPDATE items SET id = $base + 3 WHERE id = $base + 2");
		push @win, run_tx("DELETE FROM items WHERE id = $base + 1");
		push @win, run_tx("INSERT INTO unpub VALUES ($base + 9)");
		push @win, run_tx("TRUNCATE items, other");
		wait_confirmed($win[-1], $label);

		# tx numbers index @win: transaction k committed between $win[k] and $win[k+1]
		my @exp = (
			{ tx => 0, op => 'c', table => 'items', before => undef,
			  after => { id => $base + 1, name => 'n1', qty => 1, price => 1.5 }, seq => 1 },
			{ tx => 0, op => 'c', table => 'items', before => undef,
			  after => { id => $base + 2, name => 'n2', qty => 2, price => 2.5 }, seq => 2 },
			{ tx => 0, op => 'c', table => 'other', before => undef,
			  after => { id => $base + 1 }, seq => 4 },
			{ tx => 1, op => 'u', table => 'items', before => undef,
			  after => { id => $base + 1, name => 'n1', qty => 11, price => 1.5 }, seq => 1 },
			{ tx => 2, op => 'u', table => 'items', before => { id => $base + 2 },
			  after => { id => $base + 3, name => 'n2', qty => 2, price => 2.5 }, seq => 1 },
			{ tx => 3, op => 'd', table => 'items', before => { id => $base + 1 },
			  after => undef, seq => 1 },
			{ tx => 5, op => 't', table => 'items', before => undef, after => undef, seq => 1 },
			{ tx => 5, op => 't', table => 'other', before => undef, after => undef, seq => 1 });
		# in the flat shape an UPDATE that changes the key first deletes the
		# old key: a line of its own, with the update's change id
		my $flat = $shape eq 'flat' && $format eq 'ndjson';
		@exp = map {
			$flat && $_->{op} eq 'u' && $_->{before} && $_->{before}{id} != $_->{after}{id}
			  ? ({ %$_, op => 'd', after => undef }, $_)
			  : ($_)
		} @exp;

		my @reqs = $sink->requests(since => $mark);
		ok(@reqs >= 1, "$label: requests arrived");
		my @batches;
		my $i = 0;
		for my $r (@reqs)
		{
			$i++;
			my @e = check_request($r, $format, $shape, $compression, "$label req $i");
			push @batches, [ $r->{batch_id} // '', \@e ];
		}

		# stream order: by the first change id of each batch
		my $batch_key = sub {
			my ($id) = @_;
			return $id =~ m{^([0-9A-F]+/[0-9A-F]+):(\d+)\.\.} ? sprintf('%016X:%010d', lsn_num($1), $2) : '';
		};
		my @sorted = sort { $batch_key->($a->[0]) cmp $batch_key->($b->[0]) } @batches;
		my @act = map { @{ $_->[1] } } @sorted;
		if ($inflight == 1)
		{
			is_deeply([ map { $_->[0] } @batches ], [ map { $_->[0] } @sorted ],
				"$label: with max_inflight = 1, batches arrive in stream order");
		}

		# commit LSNs: each transaction's inside its window, in commit order
		my $lsn_ok = @act == @exp;
		for my $k (0 .. $#act)
		{
			last if $k > $#exp;
			my $tx = $exp[$k]{tx};
			my $l = lsn_num($act[$k]{lsn} // '0/0');
			if ($l > lsn_num($win[$tx]) && $l < lsn_num($win[ $tx + 1 ]))
			{
				$exp[$k]{lsn} = $act[$k]{lsn};
			}
			else
			{
				$lsn_ok = 0;
				diag("$label: change $k has commit LSN $act[$k]{lsn}, outside ($win[$tx], $win[$tx + 1])");
			}
			delete $exp[$k]{tx};
		}
		ok($lsn_ok, "$label: commit LSNs are those of the transactions, in commit order");

		# a change id is unique; in the flat shape a key change has two lines
		# (a delete of the old key, then the update) with the same id, so
		# flat lines are unique on (_lsn, _seq, _op)
		for my $a (@act)
		{
			my $key = "$a->{lsn}:$a->{seq}:"
			  . ($a->{op} eq 't' ? $a->{table} : $flat ? $a->{op} : '');
			$duplicate_ids++ if $seen_ids{$key}++;
		}

		if ($flat)
		{
			# _version is the change's own LSN: below its commit LSN, and
			# increasing with _seq within a transaction (the two lines of a
			# key change share it)
			my $version_ok = 1;
			for my $k (0 .. $#act)
			{
				my ($a, $p) = ($act[$k], $k > 0 ? $act[ $k - 1 ] : undef);
				next if $a->{op} eq 't';
				my $v = $a->{version} // 0;
				$version_ok = 0, diag("$label: _version $v not below commit LSN $a->{lsn}")
				  unless $v > 0 && $v < lsn_num($a->{lsn});
				next unless $p && $p->{op} ne 't' && $p->{lsn} eq $a->{lsn};
				$version_ok = 0, diag("$label: _version $v after $p->{version} in one transaction")
				  unless ($a->{seq} > $p->{seq} && $v > $p->{version})
				  || ($a->{seq} == $p->{seq} && $v == $p->{version} && $p->{op} eq 'd'
					  && $a->{op} eq 'u');
			}
			ok($version_ok, "$label: _version is each change's LSN, in order");
			delete $_->{version} for @act;

			my @flat = map {
				{
					op => $_->{op},
					row => ($_->{op} eq 't' ? undef : $_->{op} eq 'd' ? $_->{before} : $_->{after}),
					deleted => ($_->{op} eq 'd' ? 1 : 0),
					lsn => $_->{lsn},
					seq => $_->{seq},
					($_->{op} eq 't' ? (table => $_->{table}) : ()) }
			} @exp;
			is_deeply(\@act, \@flat, "$label: changes arrive in order with the right contents")
			  or diag(explain(\@act));
		}
		else
		{
			delete $_->{id} for @act;
			is_deeply(\@act, \@exp, "$label: changes arrive in order with the right contents")
			  or diag(explain(\@act));
		}

		# the raw text keeps numeric scale and column order
		if ($format eq 'ndjson')
		{
			my $all = join('', map { $sink->body($_->{seq}) } @reqs);
			my $n1 = $base + 1;
			like($all, qr/\{"id": $n1, "name": "n1", "qty": 1, "price": 1\.50[,}]/,
				"$label: columns in order, numeric as written");
		}
		$last_commit_lsn = $act[-1]{lsn} if @act;
		$last_after = $win[-1];
	}
}
is($duplicate_ids, 0, 'every change id (flat: with its _op) is unique over all rounds');

# back to the defaults: ndjson, envelope, none
$node->safe_psql('postgres', q{
ALTER SYSTEM RESET walship.format;
ALTER SYSTEM RESET walship.ndjson_shape;
ALTER SYSTEM RESET walship.compression;
ALTER SYSTEM RESET walship.max_inflight;
});
reload_settled();

# ---------------------------------------------------------------------------
# 2. walship.status and walship.progress
# ---------------------------------------------------------------------------
{
	my @acked = grep { is_2xx($_) } $sink->requests;
	my ($batches, $changes, $bytes) = (scalar(@acked), 0, 0);
	for my $r (@acked)
	{
		my $body = $sink->body($r->{seq});
		my %ids;
		if ($r->{content_type} eq $content_type{binary})
		{
			my $hex = unpack('H*', $body);
			$changes += $node->safe_psql('postgres', qq{
SELECT count(*) FROM walship.decode_stream(decode('$hex', 'hex')) r
 WHERE r->>'kind' IN ('insert', 'update', 'delete', 'truncate')});
		}
		else
		{
			for my $l (parse_ndjson($body))
			{
				my $id = exists $l->{_lsn} ? "$l->{_lsn}-$l->{_seq}" : $l->{id};
				$ids{$id} = 1;
			}
			$changes += keys %ids;
		}
		$bytes += $r->{wire_len};
	}
	is($changes, 7 * $round, 'the sink got 7 changes per round');
	ok( $node->poll_query_until('postgres', qq{
SELECT batches_shipped = $batches AND changes_shipped = $changes AND bytes_shipped = $bytes
  FROM walship.status}),
		"status counters match the sink: $batches batches, $changes changes, $bytes bytes")
	  or diag(status('batches_shipped, changes_shipped, bytes_shipped'));
	ok($node->poll_query_until('postgres', 'SELECT lag_bytes = 0 FROM walship.status'),
		'lag_bytes reaches 0 after catching up');
	is( status(qq{state, paused, inflight, retries, rejected_batches, last_http_status,
                  last_error IS NULL, freshness_seconds = 0,
                  confirmed_lsn > '$confirmed_at_start', confirmed_lsn >= '$last_after',
                  decoded_lsn >= confirmed_lsn, last_success_at IS NOT NULL,
                  started_at IS NOT NULL, database, slot_name, publication, format}),
		"streaming|f|0|0|0|204|t|t|t|t|t|t|t|postgres|walship|pub|ndjson (envelope)",
		'status: streaming, nothing in flight, no error, confirmed LSN advanced');
	ok( $node->poll_query_until('postgres', qq{
SELECT p.changes = $changes AND p.batches = $batches AND p.bytes = $bytes
   AND p.confirmed_lsn > '$last_commit_lsn' AND p.last_success_at IS NOT NULL
   AND p.last_error IS NULL AND p.retries = 0
  FROM walship.progress p WHERE p.slot_name = 'walship'}),
		'walship.progress row records the totals and the confirmed LSN')
	  or diag($node->safe_psql('postgres', 'SELECT * FROM walship.progress'));
}

# ---------------------------------------------------------------------------
# 3. Auth: token rotation on reload; secrets never in the log or the status
# ---------------------------------------------------------------------------
{
	my $token2 = 'tok-second-SECRET-90ab77';
	write_file($token_file, "$token2\n");
	reload_settled();
	my $mark = $sink->last_seq;
	$node->safe_psql('postgres', "INSERT INTO items VALUES (5001, 'tok', 0, 0)");
	my $c = wait_for_item($mark, 'items', 5001, 'change after token rotation arrives');
	my ($r) = grep { ($sink->body($_->{seq}) // '') =~ /"id": 5001/ } $sink->requests(since => $mark);
	is($r && $r->{auth_sha256}, WalshipHttpSink::auth_sha256("Bearer $token2"),
		'token file is re-read on reload');
	write_file($token_file, "$token\n");
	reload_settled();

	my $status_text = $node->safe_psql('postgres', 'SELECT s::text FROM walship.status s');
	unlike($status_text, qr/SECRET/, 'walship.status shows neither token nor header values');
	my $log = slurp_file($node->logfile);
	unlike($log, qr/\Q$token\E|\Q$token2\E/, 'the token never appears in the server log');
	unlike($log, qr/\Q$header_secret\E/, 'header values never appear in the server log');
}

# ---------------------------------------------------------------------------
# 4. Privileges
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', q{
CREATE ROLE plain LOGIN;
CREATE ROLE adm LOGIN;
GRANT walship_admin TO adm;
});

# Runs $sql as $role; returns (exit code, stdout, stderr).
sub psql_as
{
	my ($role, $sql) = @_;
	my ($out, $err);
	my $rc = $node->psql('postgres', $sql, stdout => \$out, stderr => \$err,
		extra_params => [ '-U', $role ]);
	return ($rc, $out, $err);
}

for my $guc (qw(walship.endpoint walship.headers walship.auth_token_file))
{
	my ($rc, $out, $err) = psql_as('plain', "SHOW $guc");
	isnt($rc, 0, "plain user: SHOW $guc refused");
	# PostgreSQL 16 reworded it: "permission denied to examine", with
	# the role needed in DETAIL.
	like($err, qr/(?:must be superuser or have privileges of pg_read_all_settings to examine|permission denied to examine) "\Q$guc\E"/,
		"plain user: SHOW $guc error message");
	unlike($out // '', qr/127\.0\.0\.1|SECRET|\Q$token_file\E/, "plain user: SHOW $guc shows nothing");
}
{
	my ($rc, $out, $err) = psql_as('plain',
		q{SELECT count(*) FROM pg_settings WHERE name IN ('walship.endpoint', 'walship.headers')});
	is($out, '0', 'plain user: pg_settings hides the endpoint and headers');
	($rc, $out, $err) = psql_as('plain',
		q{SELECT state, endpoint IS NULL, s::text FROM walship.status s});
	is($rc, 0, 'plain user may read walship.status');
	like($out, qr/^streaming\|t\|/, 'plain user: status endpoint is NULL');
	unlike($out, qr/127\.0\.0\.1|SECRET/, 'plain user: status shows no endpoint or secret');

	($rc, $out, $err) = psql_as('adm', q{SELECT endpoint FROM walship.status});
	is($out, $sink->url('/ingest'), 'walship_admin member sees the endpoint in walship.status');

	for my $f (qw(pause resume))
	{
		($rc, $out, $err) = psql_as('plain', "SELECT walship.$f()");
		isnt($rc, 0, "plain user: walship.$f() refused");
		like($err, qr/permission denied for function $f/, "plain user: walship.$f() error message");
	}
	is(status('paused'), 'f', 'refused pause() changed nothing');
	for my $t (qw(progress dead_letter))
	{
		($rc, $out, $err) = psql_as('plain', "SELECT count(*) FROM walship.$t");
		like($err, qr/permission denied for table $t/, "plain user: walship.$t not readable");
		($rc, $out, $err) = psql_as('adm', "SELECT count(*) FROM walship.$t");
		is($rc, 0, "walship_admin member: walship.$t readable");
	}
}

# ---------------------------------------------------------------------------
# 5. pause() / resume()
# ---------------------------------------------------------------------------
{
	my ($rc, $out, $err) = psql_as('adm', 'SELECT walship.pause()');
	is($rc, 0, 'walship_admin member may pause') or diag($err);
	ok($node->poll_query_until('postgres', q{SELECT state = 'paused' AND paused FROM walship.status}),
		'status says paused');
	my $mark = $sink->last_seq;
	my $after = run_tx("INSERT INTO items VALUES (6001, 'paused', 0, 0)");
	usleep(1_000_000);
	is($sink->last_seq, $mark, 'nothing is sent while paused');
	is(status(q{state || ' ' || (lag_bytes > 0)}), 'paused true', 'paused: lag grows');
	($rc, $out, $err) = psql_as('adm', 'SELECT walship.resume()');
	is($rc, 0, 'walship_admin member may resume') or diag($err);
	wait_for_item($mark, 'items', 6001, 'change made while paused arrives after resume');
	wait_confirmed($after, 'after resume');
	is(status('state, paused'), 'streaming|f', 'status says streaming after resume');
}

# ---------------------------------------------------------------------------
# 6. walship.enabled
# ---------------------------------------------------------------------------
{
	$node->safe_psql('postgres', 'ALTER SYSTEM SET walship.enabled = off');
	reload_settled();
	ok($node->poll_query_until('postgres', q{SELECT state = 'disabled' FROM walship.status}),
		'walship.enabled = off: state disabled');
	my $mark = $sink->last_seq;
	my $after = run_tx("INSERT INTO items VALUES (6002, 'disabled', 0, 0)");
	usleep(500_000);
	is($sink->last_seq, $mark, 'nothing is sent while disabled');
	is($node->safe_psql('postgres',
			q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walship worker'}),
		'1', 'disabled worker stays connected');
	$node->safe_psql('postgres', 'ALTER SYSTEM RESET walship.enabled');
	reload_settled();
	wait_for_item($mark, 'items', 6002, 'change made while disabled arrives when enabled again');
	wait_confirmed($after, 'after enabling');
	is(status('state'), 'streaming', 'state streaming when enabled again');
}

# ---------------------------------------------------------------------------
# 7. An idle slot keeps up with traffic it does not ship
# ---------------------------------------------------------------------------
{
	my $mark = $sink->last_seq;
	$node->safe_psql('postgres', 'CREATE DATABASE otherdb');
	$node->safe_psql('otherdb', q{
CREATE TABLE items (id int PRIMARY KEY, name text);
INSERT INTO items SELECT g, 'x' FROM generate_series(1, 2000) g;
UPDATE items SET name = 'y';
});
	$node->safe_psql('postgres', q{
INSERT INTO unpub SELECT g FROM generate_series(1, 2000) g;
DELETE FROM unpub;
});
	my $lsn = $node->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');
	ok(wait_slot_confirmed($node, $lsn),
		'idle slot: confirmed_flush_lsn catches up with traffic in unpublished tables and other databases');
	ok($node->poll_query_until('postgres', 'SELECT lag_bytes = 0 FROM walship.status'),
		'idle slot: lag_bytes back to 0');
	is($sink->last_seq, $mark, 'idle slot: nothing was sent');
}

# ---------------------------------------------------------------------------
# 8. DDL and publication changes mid-stream
# ---------------------------------------------------------------------------
{
	my $mark = $sink->last_seq;
	$node->safe_psql('postgres', q{
INSERT INTO evolve VALUES (1, 'x');
ALTER TABLE evolve ADD COLUMN b int;
INSERT INTO evolve VALUES (2, 'y', 7);
ALTER TABLE evolve DROP COLUMN a;
INSERT INTO evolve VALUES (3, 8);
BEGIN;
INSERT INTO evolve VALUES (4, 9);
ALTER TABLE evolve ADD COLUMN c text DEFAULT 'd';
INSERT INTO evolve VALUES (5, 10, 'e');
COMMIT;
INSERT INTO late VALUES (1, 'before');
ALTER PUBLICATION pub ADD TABLE late;
INSERT INTO late VALUES (2, 'after');
INSERT INTO items VALUES (7001, 'sentinel', 0, 0);
});
	wait_for_item($mark, 'items', 7001, 'DDL: sentinel arrives');
	my @c = envelope_changes($mark);
	is_deeply(
		[ map { $_->{after} } grep { $_->{source}{table} eq 'evolve' } @c ],
		[
			{ id => 1, a => 'x' },
			{ id => 2, a => 'y', b => 7 },
			{ id => 3, b => 8 },
			{ id => 4, b => 9 },
			{ id => 5, b => 10, c => 'e' },
		],
		'DDL mid-stream: each row has the columns of its time')
	  or diag(explain(\@c));
	my $all = join('', map { $sink->body($_->{seq}) // '' } $sink->requests(since => $mark));
	like($all, qr/"after": \{"id": 2, "a": "y", "b": 7\}/, 'DDL: added column last, in order');
	is_deeply([ map { $_->{after} } grep { $_->{source}{table} eq 'late' } @c ],
		[ { id => 2, v => 'after' } ],
		'publication changed mid-stream: changes of the added table arrive from that point');
}

# ---------------------------------------------------------------------------
# 9. Bad settings at reload are refused and do not stop the pipeline
# ---------------------------------------------------------------------------
{
	my $conf_file = $node->data_dir . '/postgresql.conf';
	my $conf = slurp_file($conf_file);
	my $before = $node->safe_psql('postgres',
		q{SELECT current_setting('walship.endpoint') || ' ' || current_setting('walship.batch_max_changes') || ' ' || current_setting('walship.format')});
	my $offset = -s $node->logfile;
	$node->append_conf('postgresql.conf', q{
walship.endpoint = 'ftp://ws:UrlPw-SECRET-31@x/'
walship.batch_max_changes = -5
walship.format = 'xml'
});
	$node->reload;
	ok($node->wait_for_log(qr/contains errors; unaffected changes were applied/, $offset),
		'bad settings: reload reports errors');
	my $log = substr(slurp_file($node->logfile), $offset);
	like($log, qr/invalid URL in "walship\.endpoint"/, 'bad endpoint refused with its message');
	like($log, qr/The URL scheme must be http or https/, 'bad endpoint: detail says why');
	unlike($log, qr/UrlPw-SECRET/, 'bad endpoint: the URL (it may hold credentials) is not logged');
	like($log, qr/-5 is outside the valid range for parameter "walship\.batch_max_changes"/,
		'negative batch_max_changes refused');
	like($log, qr/invalid value for parameter "walship\.format": "xml"/, 'unknown format refused');
	is( $node->safe_psql('postgres',
			q{SELECT current_setting('walship.endpoint') || ' ' || current_setting('walship.batch_max_changes') || ' ' || current_setting('walship.format')}),
		$before, 'SHOW still gives the old values');

	usleep(150_000);
	my $mark = $sink->last_seq;
	my $after = run_tx("INSERT INTO items VALUES (8001, 'still', 0, 0)");
	wait_for_item($mark, 'items', 8001, 'bad settings: changes still arrive');
	wait_confirmed($after, 'after bad settings');
	my @r = $sink->requests(since => $mark);
	is($r[0]{content_type}, 'application/x-ndjson', 'bad settings: format unchanged');
	is(status('state'), 'streaming', 'bad settings: still streaming');

	write_file($conf_file, $conf);
	$offset = -s $node->logfile;
	reload_settled();
	unlike(substr(slurp_file($node->logfile), $offset), qr/contains errors/,
		'restored configuration reloads cleanly');
	$mark = $sink->last_seq;
	$node->safe_psql('postgres', "INSERT INTO items VALUES (8002, 'restored', 0, 0)");
	wait_for_item($mark, 'items', 8002, 'changes arrive after restoring the configuration');
}

# ---------------------------------------------------------------------------
# 11. walship.publication changed at reload, to a FOR ALL TABLES
# publication: decoding restarts with it, and the worker's own writes to
# walship.progress are still never shipped (no feedback loop)
# ---------------------------------------------------------------------------
{
	$node->safe_psql('postgres', 'CREATE PUBLICATION allpub FOR ALL TABLES');
	my $offset = -s $node->logfile;
	$node->safe_psql('postgres', q{ALTER SYSTEM SET walship.publication = 'allpub'});
	reload_settled();
	ok($node->wait_for_log(qr/walship restarts decoding for publications "allpub"/, $offset),
		'new walship.publication: decoding restarts');
	my $mark = $sink->last_seq;
	my $after = run_tx(q{
INSERT INTO unpub VALUES (424242);
INSERT INTO items VALUES (9101, 'allpub', 0, 0)});
	wait_for_item($mark, 'items', 9101, 'FOR ALL TABLES: change arrives');
	wait_confirmed($after, 'FOR ALL TABLES');
	ok($node->poll_query_until('postgres', 'SELECT lag_bytes = 0 FROM walship.status'),
		'FOR ALL TABLES: caught up');
	usleep(500_000);
	my @c = envelope_changes($mark);
	ok((grep { $_->{source}{table} eq 'unpub' && $_->{after}{id} == 424242 } @c),
		'FOR ALL TABLES: a table only it publishes is shipped');
	is_deeply([ grep { $_->{source}{schema} ne 'public' } @c ], [],
		"the worker's own catalog writes are not shipped");
	is(scalar(@c), 2, 'FOR ALL TABLES: exactly the two changes, no feedback loop')
	  or diag(explain(\@c));
	is(status('publication'), 'allpub', 'status shows the new publication');
}

# ---------------------------------------------------------------------------
# 12. Endpoint with {schema}/{table} placeholders, changed at reload: one
# request per table, each with its lines only
# ---------------------------------------------------------------------------
{
	$node->safe_psql('postgres', qq{ALTER SYSTEM SET walship.endpoint = '${\ $sink->url('/t/{schema}/{table}') }'});
	reload_settled();
	my $mark = $sink->last_seq;
	my $after = run_tx(q{
BEGIN;
INSERT INTO items VALUES (9201, 'split', 0, 0);
INSERT INTO other VALUES (9201);
INSERT INTO items VALUES (9202, 'split', 0, 0);
COMMIT});
	wait_confirmed($after, 'placeholders');
	my @r = $sink->requests(since => $mark);
	my %by_path;
	for my $r (@r)
	{
		push @{ $by_path{ $r->{path} } }, body_changes($sink, $r->{seq});
	}
	is_deeply(
		{ map { $_ => [ map { "$_->{source}{table}:$_->{after}{id}" } @{ $by_path{$_} } ] } keys %by_path },
		{ '/t/public/items' => [ 'items:9201', 'items:9202' ], '/t/public/other' => ['other:9201'] },
		'placeholders: one request per table, with that table\'s lines in order');
	is(scalar(keys %{ { map { ($_->{batch_id} // '') => 1 } @r } }), 1,
		'placeholders: the requests of one batch share its batch id');
	ok((grep { $_->{status} == 204 } @r) == @r, 'placeholders: all acknowledged');
}

# ---------------------------------------------------------------------------
# The worker never crashed or restarted
# ---------------------------------------------------------------------------
{
	my $log = slurp_file($node->logfile);
	unlike($log, qr/background worker "walship worker".*(exited|terminated)/,
		'the worker never exited');
	is(status('worker_pid'), $worker_pid, 'the worker kept its pid all along');
	unlike($log, qr/\Q$token\E/, 'the token never appears in the server log (end)');
}

$node->stop;
$sink->stop;
done_testing();
