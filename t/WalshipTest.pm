# Copyright (c) walship developers
#
# t/WalshipTest.pm
#	  Helpers the worker TAP tests share: a cluster set up for the walship
#	  worker, waiting for the worker and its slot, crash-tolerant queries
#	  (psql -c, for servers that may go away mid-call), walship.status,
#	  NDJSON bodies and a walship slot's changes as NDJSON, LSNs as
#	  numbers, killing the worker, a pgbench workload that survives crash
#	  restarts, what the server log says about the worker, and the
#	  at-least-once check of the acknowledged changes against a reference
#	  slot.
#
#	  Every function takes the node (and the sink) it works on; none makes
#	  an assertion (the tests keep their own ok()/is() and test names)
#	  except check_acked_against_reference(), the at-least-once check the
#	  crash, failover and encoder tests share.
#
# IDENTIFICATION
#	  t/WalshipTest.pm

package WalshipTest;

use strict;
use warnings;

use Exporter 'import';
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);

our @EXPORT = qw(
  worker_node plugin_libraries_conf
  wait_streaming wait_slot_confirmed slot_confirmed_at_least slot_confirmed_lsn
  wait_worker_caught_up
  try_query poll_until poll_value worker_pid wait_for_new_worker streaming_worker_inflight
  kill_worker worker_sigkills worker_errors
  start_workload stop_workload
  walship_status
  lsn_num lsn_text
  parse_ndjson body_changes is_2xx slot_ndjson
  check_acked_against_reference replayed_table_diff
);

my $json = JSON::PP->new->utf8;

# "output_plugin_libraries = '$libraries'" as a postgresql.conf line when
# the server has that setting (PostgreSQL 15.19 and later), else an empty
# string: older servers refuse to start on a setting they do not know.
my $server_has_plugin_libraries;
sub plugin_libraries_conf
{
	my ($libraries) = @_;
	$libraries //= 'pgoutput, test_decoding, walship';
	if (!defined $server_has_plugin_libraries)
	{
		my $settings = `postgres --describe-config 2>/dev/null`;
		$server_has_plugin_libraries =
		  ($settings =~ /^output_plugin_libraries\t/m) ? 1 : 0;
	}
	return $server_has_plugin_libraries
	  ? "output_plugin_libraries = '$libraries'\n"
	  : '';
}

# What every worker test's postgresql.conf starts with.
my $worker_conf = q{
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
shared_preload_libraries = 'walship'
} . plugin_libraries_conf();

# WALSHIP_TEST_ENCODER_WORKERS=N runs the worker tests with
# walship.encoder_workers = N (a test's own setting, after it, wins).
my $encoder_workers_conf =
  defined $ENV{WALSHIP_TEST_ENCODER_WORKERS}
  && $ENV{WALSHIP_TEST_ENCODER_WORKERS} =~ /^\d+$/
  ? "walship.encoder_workers = $ENV{WALSHIP_TEST_ENCODER_WORKERS}\n"
  : '';

# A new node (not started) set up for the worker: logical WAL, room for
# slots and walsenders, walship preloaded and allowed as an output plugin;
# $conf (postgresql.conf text: walship.* settings and the like) follows.
sub worker_node
{
	my ($name, $conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => 'logical');
	$node->append_conf('postgresql.conf',
		$worker_conf . $encoder_workers_conf . ($conf // ''));
	return $node;
}

# ---------------------------------------------------------------------------
# Waiting for the worker and its slot (the server is up)
# ---------------------------------------------------------------------------

# Polls until walship.status says streaming; true if it did in time.
sub wait_streaming
{
	my ($node) = @_;
	return $node->poll_query_until('postgres',
		q{SELECT state = 'streaming' FROM walship.status});
}

sub _slot_confirmed_sql
{
	my ($lsn, $slot) = @_;
	$slot //= 'walship';
	return "SELECT confirmed_flush_lsn >= '$lsn' FROM pg_replication_slots WHERE slot_name = '$slot'";
}

# Polls until slot $slot (default walship) is confirmed up to $lsn; true if
# it was in time.
sub wait_slot_confirmed
{
	my ($node, $lsn, $slot) = @_;
	return $node->poll_query_until('postgres', _slot_confirmed_sql($lsn, $slot));
}

# True if slot $slot (default walship) is confirmed up to $lsn now.
sub slot_confirmed_at_least
{
	my ($node, $lsn, $slot) = @_;
	return $node->safe_psql('postgres', _slot_confirmed_sql($lsn, $slot)) eq 't';
}

# The confirmed_flush_lsn of slot $slot (default walship), as text.
sub slot_confirmed_lsn
{
	my ($node, $slot) = @_;
	$slot //= 'walship';
	return $node->safe_psql('postgres',
		"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$slot'");
}

# Polls until walship.status says streaming, confirmed up to $lsn, nothing
# in flight; true if it did in time.
sub wait_worker_caught_up
{
	my ($node, $lsn) = @_;
	return $node->poll_query_until('postgres', qq{
SELECT state = 'streaming' AND confirmed_lsn >= '$lsn' AND inflight = 0
  FROM walship.status});
}

# ---------------------------------------------------------------------------
# Crash-tolerant queries: the server may restart under them
# ---------------------------------------------------------------------------

# Runs $sql with psql -c (no stdin: a server going away mid-call cannot
# break a pipe); returns its output, or undef if psql failed.
sub try_query
{
	my ($node, $sql) = @_;
	my ($out, $err) = ('', '');
	my $ok = eval {
		IPC::Run::run(
			[
				$node->installed_command('psql'), '-XAtq', '-v', 'ON_ERROR_STOP=1',
				'-d', $node->connstr('postgres'), '-c', $sql
			],
			'<', \undef, '>', \$out, '2>', \$err,
			IPC::Run::timeout(60));
	};
	return undef unless $ok;
	chomp $out;
	return $out;
}

# Polls with try_query every 100 ms, up to $seconds (default: the default
# timeout), until $sql returns 't'; true if it did.
sub poll_until
{
	my ($node, $sql, $seconds) = @_;
	my $deadline = time + ($seconds // $PostgreSQL::Test::Utils::timeout_default);
	while (time < $deadline)
	{
		my $r = try_query($node, $sql);
		return 1 if defined $r && $r eq 't';
		sleep 0.1;
	}
	return 0;
}

# Polls $get->() every 100 ms (its errors count as "not yet"), up to the
# default timeout, until $check->(value) holds; true if it did.  For
# values that are not the server's: ClickHouse's, the server log's.
sub poll_value
{
	my ($get, $check) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (time < $deadline)
	{
		my $v = eval { $get->() };
		return 1 if defined $v && $check->($v);
		sleep 0.1;
	}
	return 0;
}

# The walship worker's pid from pg_stat_activity, or undef.
sub worker_pid
{
	my ($node) = @_;
	my $pid = try_query($node,
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'walship worker'});
	return defined $pid && $pid =~ /^\d+$/ ? $pid : undef;
}

# Polls until the server answers and a walship worker other than $old_pid
# streams; true if one did in time.
sub wait_for_new_worker
{
	my ($node, $old_pid) = @_;
	$old_pid //= 0;
	return poll_until($node, qq{
SELECT count(*) = 1 FROM pg_stat_activity
 WHERE backend_type = 'walship worker' AND pid <> $old_pid
   AND (SELECT state = 'streaming' FROM walship.status)
});
}

# (worker pid, requests in flight) from walship.status while streaming;
# () when not streaming or the server does not answer.
sub streaming_worker_inflight
{
	my ($node) = @_;
	my $row = try_query($node,
		q{SELECT worker_pid, inflight FROM walship.status WHERE state = 'streaming'}) // '';
	return $row =~ /^(\d+)\|(\d+)$/ ? ($1, $2) : ();
}

# ---------------------------------------------------------------------------
# Crashes, workload, the server log
# ---------------------------------------------------------------------------

# kill -9 of the walship worker $pid (dies if that fails); notes it, with
# $detail appended.
sub kill_worker
{
	my ($pid, $detail) = @_;
	kill 'KILL', $pid or die "kill $pid: $!";
	note "kill -9 of walship worker $pid" . ($detail // '');
	return;
}

# How many times the log text $log shows the worker killed by SIGKILL.
sub worker_sigkills
{
	my ($log) = @_;
	my @killed = $log =~ /background worker "walship worker" \(PID \d+\) was terminated by signal 9/g;
	return scalar(@killed);
}

# The worker's ERROR, FATAL and PANIC lines in the log text $log
# (log_line_prefix is '%m [%p] %q%a ': the worker's application_name is
# walship).
sub worker_errors
{
	my ($log) = @_;
	return $log =~ /(\[\d+\] walship(?: worker)? (?:ERROR|FATAL|PANIC):[^\n]*)/g;
}

# Starts pgbench (@args: its options and scripts) against $node in a loop
# until stop_workload(), or until this test process is gone: a crash restart
# ends a run, the loop starts another.  Output goes to $dir/workload.log.
sub start_workload
{
	my ($node, $dir, @args) = @_;
	my $w = { stop_file => "$dir/stop_workload" };
	$w->{run} = IPC::Run::start(
		[
			'bash', '-c',
			q{stop=$1 bindir=$2 host=$3 port=$4 owner=$5; shift 5
while [ ! -e "$stop" ] && kill -0 "$owner" 2>/dev/null; do
  "$bindir/pgbench" -n -h "$host" -p "$port" "$@" postgres
  sleep 0.2
done},
			'workload', $w->{stop_file}, $node->config_data('--bindir'),
			$node->host, $node->port, $$, @args
		],
		'<', \undef, '>', "$dir/workload.log", '2>&1');
	return $w;
}

# Ends the loop of start_workload() after its current run, and waits.
sub stop_workload
{
	my ($w) = @_;
	PostgreSQL::Test::Utils::append_to_file($w->{stop_file}, '');
	$w->{run}->finish;
	return;
}

# ---------------------------------------------------------------------------
# walship.status, LSNs, NDJSON
# ---------------------------------------------------------------------------

# SELECT $cols FROM walship.status, as psql -A prints it.
sub walship_status
{
	my ($node, $cols) = @_;
	return $node->safe_psql('postgres', "SELECT $cols FROM walship.status");
}

# An LSN ('16/B374D848') as a number; dies on anything else.
sub lsn_num
{
	my ($lsn) = @_;
	die "bad LSN '" . ($lsn // 'undef') . "'" unless defined $lsn && $lsn =~ m{^([0-9A-F]+)/([0-9A-F]+)$}i;
	return hex($1) * 4294967296 + hex($2);
}

# A number as an LSN ('16/B374D848').
sub lsn_text { my ($n) = @_; return sprintf('%X/%X', $n >> 32, $n & 0xffffffff); }

# NDJSON text (undef: none) to the list of its lines, decoded.
sub parse_ndjson
{
	my ($text) = @_;
	return map { $json->decode($_) } grep { $_ ne '' } split /\n/, ($text // '');
}

# The lines of the body of $sink's request $seq, decoded.
sub body_changes
{
	my ($sink, $seq) = @_;
	return parse_ndjson($sink->body($seq));
}

# True if the sink request record $r was answered 2xx.
sub is_2xx { my ($r) = @_; return defined $r->{status} && $r->{status} >= 200 && $r->{status} <= 299; }

# Consumes the changes waiting in the walship slot $slot (publication $pub)
# and returns them as walship.encode_ndjson() makes them (@encode: its
# shape and dialect), '' when there are none.
sub slot_ndjson
{
	my ($node, $slot, $pub, @encode) = @_;
	my $args = join('', map { ", '$_'" } @encode);
	return $node->safe_psql('postgres', qq{
SELECT coalesce(walship.encode_ndjson(string_agg(data, ''::bytea ORDER BY n)$args), '')
FROM pg_logical_slot_get_binary_changes('$slot', NULL, NULL,
       'publication_names', '$pub', 'format_version', '1')
     WITH ORDINALITY AS c(lsn, xid, data, n)});
}

# ---------------------------------------------------------------------------
# At least once: the acknowledged changes against a reference slot
# ---------------------------------------------------------------------------

# The at-least-once check of a workload shipped as NDJSON (envelope shape)
# through crashes or a failover.  Loads into $node's postgres database:
#   acked (n, line): every line of every acknowledged (2xx) request of
#     $sink, in order (written to $dir/acked.ndjson for the server to read);
#   ref (id, r): the changes of the reference slot $o{ref_slot} (default
#     ref; publication $o{publication}, never consumed: peeked), decoded,
#     with their change ids (commit LSN as 16 hex digits - ordinal);
#   dedup (id, line): acked deduplicated by change id (the first line).
# Then asserts, with test names saying "$o{what}" (default "committed
# change") for a change of ref:
#   every acknowledged line's id is its commit LSN and ordinal;
#   the lines of one change id are identical;
#   none of ref's changes is missing from dedup, and dedup has none that
#   ref has not: deduplicated by id, exactly ref's changes;
#   each change of dedup has its ref change's operation, table and row
#   values (after, and before: old row or key).
# Returns the number of changes in ref (the tests check it is plausible).
sub check_acked_against_reference
{
	my ($node, $sink, $dir, %o) = @_;
	my $ref_slot = $o{ref_slot} // 'ref';
	my $pub = $o{publication} // die 'check_acked_against_reference: publication';
	my $what = $o{what} // 'committed change';

	my $acked_file = "$dir/acked.ndjson";
	open(my $afh, '>', $acked_file) or die "$acked_file: $!";
	foreach my $r (grep { is_2xx($_) } $sink->requests)
	{
		my $body = $sink->body($r->{seq});
		next unless defined $body && $body ne '';
		$body .= "\n" unless $body =~ /\n\z/;
		print $afh $body;
	}
	close $afh or die $!;
	chmod 0644, $acked_file;

	$node->safe_psql('postgres', qq{
CREATE FUNCTION lsn16(text) RETURNS text IMMUTABLE LANGUAGE sql AS
\$\$ SELECT upper(lpad(split_part(\$1, '/', 1), 8, '0') || lpad(split_part(\$1, '/', 2), 8, '0')) \$\$;
CREATE TABLE acked (n bigserial PRIMARY KEY, line jsonb NOT NULL);
INSERT INTO acked (line)
SELECT l::jsonb FROM regexp_split_to_table(pg_read_file('$acked_file'), E'\\n') AS l
 WHERE l <> '';
CREATE TABLE ref AS
SELECT lsn16(r->>'commit_lsn') || '-' || (r->>'ordinal') AS id, r
  FROM walship.decode_stream((
       SELECT string_agg(data, ''::bytea ORDER BY n)
         FROM pg_logical_slot_peek_binary_changes('$ref_slot', NULL, NULL,
              'publication_names', '$pub') WITH ORDINALITY AS x(lsn, xid, data, n))) AS r
 WHERE r->>'kind' IN ('insert', 'update', 'delete', 'truncate');
CREATE TABLE dedup AS
SELECT DISTINCT ON (line->>'id') line->>'id' AS id, line FROM acked ORDER BY line->>'id', n;
});
	my $ref_count = $node->safe_psql('postgres', 'SELECT count(*) FROM ref');

	is($node->safe_psql('postgres', q{
SELECT count(*) FROM acked
 WHERE line->>'id' IS DISTINCT FROM
       lsn16(line->'source'->>'commit_lsn') || '-' || (line->'source'->>'ordinal')
}), '0', 'every acknowledged line has id = commit LSN (16 hex digits) - ordinal');
	is($node->safe_psql('postgres', q{
SELECT string_agg(id, ', ') FROM (
  SELECT line->>'id' AS id FROM acked GROUP BY 1 HAVING count(DISTINCT line) > 1 LIMIT 10) AS x
}), '', 'duplicates of a change id are identical');
	is($node->safe_psql('postgres', q{
SELECT coalesce(count(*) || ' missing, e.g. ' || string_agg(id, ', ') FILTER (WHERE rn <= 10), '')
  FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM ref
         WHERE id NOT IN (SELECT id FROM dedup)) AS m
 HAVING count(*) > 0
}), '', "every $what was acknowledged at least once (none missing)");
	is($node->safe_psql('postgres', q{
SELECT coalesce(count(*) || ' extra, e.g. ' || string_agg(id, ', ') FILTER (WHERE rn <= 10), '')
  FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM dedup
         WHERE id NOT IN (SELECT id FROM ref)) AS m
 HAVING count(*) > 0
}), '', "no acknowledged change id that is not a $what");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM dedup'), $ref_count,
		"deduplicated by id: as many changes as ${what}s");
	is($node->safe_psql('postgres', q{
SELECT coalesce(string_agg(x.id || ': ' || x.line::text || ' vs ' || x.r::text, E'\n'), '')
  FROM (SELECT id, d.line, f.r FROM dedup d JOIN ref f USING (id)
         WHERE NOT (
               d.line->>'op' = CASE f.r->>'kind' WHEN 'insert' THEN 'c' WHEN 'update' THEN 'u'
                                                 WHEN 'delete' THEN 'd' ELSE 't' END
           AND (d.line->'source'->>'schema') || '.' || (d.line->'source'->>'table') = f.r->>'relation'
           AND nullif(d.line->'after', 'null') IS NOT DISTINCT FROM f.r->'new'
           AND nullif(d.line->'before', 'null') IS NOT DISTINCT FROM coalesce(f.r->'old', f.r->'key'))
         ORDER BY id LIMIT 5) AS x
}), '', "each deduplicated change has the $what\'s operation, table and row values");
	return $ref_count;
}

# After check_acked_against_reference(): how many rows differ between table
# $table (columns @cols, the first its key) and the replay of dedup's
# changes of it in (commit LSN, ordinal) order, where the last change of
# every row decides whether and how it exists.  Compared as text.
sub replayed_table_diff
{
	my ($node, $table, @cols) = @_;
	my $key = $cols[0];
	my $replayed_cols = join(', ', map { "line->'after'->>'$_'" } @cols);
	my $table_cols = join(', ', map { "$_\::text" } @cols);
	my $replayed = qq{
WITH c AS (
  SELECT line, (line->'source'->>'commit_lsn')::pg_lsn AS lsn,
         (line->'source'->>'ordinal')::bigint AS ord,
         coalesce(nullif(line->'after', 'null'), nullif(line->'before', 'null'))->>'$key' AS row_key
    FROM dedup WHERE line->'source'->>'table' = '$table'),
last AS (SELECT DISTINCT ON (row_key) * FROM c ORDER BY row_key, lsn DESC, ord DESC)
SELECT $replayed_cols FROM last WHERE line->>'op' <> 'd'
};
	return $node->safe_psql('postgres', qq{
SELECT count(*) FROM (
  (($replayed) EXCEPT ALL SELECT $table_cols FROM $table)
  UNION ALL
  (SELECT $table_cols FROM $table EXCEPT ALL ($replayed))) AS diff
});
}

1;
