# Copyright (c) walship developers
#
# t/WalshipClickHouse.pm
#	  A throwaway ClickHouse server for the walship TAP tests (and the demo):
#	  runs Debian's clickhouse-server (18.16) as the current, unprivileged
#	  user with every path (data, tmp, user_files, format_schemas, logs) in
#	  one directory, listening on 127.0.0.1 only, on free ports, with a
#	  password-less "default" user that only 127.0.0.1 may use.  No system
#	  service, no root, nothing written outside that directory.
#
#	  use FindBin;
#	  use lib $FindBin::RealBin;
#	  use WalshipClickHouse;
#
#	  my ($ok, $why) = WalshipClickHouse->available;
#	  plan skip_all => "clickhouse-server is not installed ($why)" unless $ok;
#	  my $ch = WalshipClickHouse->new(dir => "$tmp/clickhouse");
#	  $ch->query('CREATE DATABASE shop');
#	  $ch->query('CREATE TABLE shop.orders (...) ENGINE = ReplacingMergeTree(_version) ORDER BY id');
#	  $node->append_conf('postgresql.conf',
#	      "walship.endpoint = '" . $ch->insert_url('shop.{table}') . "'");
#	  my $rows = $ch->query_rows('SELECT country, sum(total) AS s FROM shop.orders FINAL '
#	      . 'WHERE NOT _deleted GROUP BY country ORDER BY country');
#	  $ch->stop;    # also done by DESTROY, and by a watchdog if this process dies
#
#	  Everything ClickHouse 18.16 does differently from current releases that
#	  matters to walship is in docs/clickhouse-notes.md.
#
# IDENTIFICATION
#	  t/WalshipClickHouse.pm

package WalshipClickHouse;

use strict;
use warnings;

use Carp;
use Cwd qw(abs_path);
use File::Path qw(make_path);
use File::Spec;
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

# Where clickhouse-server may be: $WALSHIP_CLICKHOUSE_SERVER first, then
# Debian's package (/usr/sbin), upstream packages (/usr/bin), $PATH, and
# upstream's single "clickhouse" binary (run as "clickhouse server").
sub _find_server
{
	my @candidates;
	push @candidates, [ $ENV{WALSHIP_CLICKHOUSE_SERVER} ] if $ENV{WALSHIP_CLICKHOUSE_SERVER};
	push @candidates, ['/usr/sbin/clickhouse-server'], ['/usr/bin/clickhouse-server'];
	my @path = grep { $_ ne '' } split /:/, ($ENV{PATH} // '');
	push @candidates, map { ["$_/clickhouse-server"] } @path;
	push @candidates, [ '/usr/bin/clickhouse', 'server' ];
	push @candidates, map { [ "$_/clickhouse", 'server' ] } @path;
	for my $c (@candidates)
	{
		return @$c if -f $c->[0] && -x _;
	}
	return;
}

# Class method.  In list context ($ok, $detail): (1, "/usr/sbin/clickhouse-server")
# or (0, "why not").  In scalar context just $ok.
sub available
{
	my ($class) = @_;
	my @cmd = _find_server();
	my @r = @cmd
	  ? (1, join(' ', @cmd))
	  : (0, 'no clickhouse-server binary in /usr/sbin, /usr/bin or $PATH (Debian 12: '
		  . 'apt-get install clickhouse-server; or set WALSHIP_CLICKHOUSE_SERVER)');
	return wantarray ? @r : $r[0];
}

# Seconds to wait for a condition unless told otherwise.
sub _default_timeout
{
	no warnings 'once';
	return $PostgreSQL::Test::Utils::timeout_default // $ENV{PG_TEST_TIMEOUT_DEFAULT} // 180;
}

# A port nobody listens on right now (the kernel's choice of an ephemeral
# one).  Another process may take it before the server binds it: new()
# retries with other ports when the server fails to start on picked ports.
sub _free_port
{
	my $sock = IO::Socket::INET->new(
		LocalAddr => '127.0.0.1',
		LocalPort => 0,
		Proto => 'tcp',
		Listen => 1,
		ReuseAddr => 0) or croak "cannot find a free port: $!";
	my $port = $sock->sockport;
	close $sock;
	return $port;
}

sub _xml_escape
{
	my ($s) = @_;
	$s =~ s/&/&amp;/g;
	$s =~ s/</&lt;/g;
	$s =~ s/>/&gt;/g;
	$s =~ s/"/&quot;/g;
	return $s;
}

# Percent-encodes everything but RFC 3986 unreserved characters.
sub uri_escape
{
	my ($s) = @_;
	utf8::encode($s) if utf8::is_utf8($s);
	$s =~ s/([^A-Za-z0-9\-._~])/sprintf('%%%02X', ord $1)/ge;
	return $s;
}

# new(dir => $dir, http_port => 0|N, tcp_port => 0|N, no_tcp => 1,
#     server_settings => {...}, user_settings => {...}, timezone => 'UTC',
#     start_timeout => $seconds)
#	dir: the server's directory (created; default: a temporary one removed
#	  at exit).  An existing data directory is reused (restart with data).
#	http_port, tcp_port: 0 (default) picks a free port.
#	no_tcp: no native-protocol port at all (clickhouse-client then cannot
#	  connect; the HTTP interface is all walship uses).
#	server_settings: top-level elements of config.xml, over the defaults
#	  (keep_alive_timeout 3 s, as Debian's config; max_concurrent_queries
#	  100; 64 MB caches), e.g. { max_concurrent_queries => 2 }.  The server
#	  only exits once every HTTP connection has been idle for
#	  keep_alive_timeout, so a client holding one delays stop() that long.
#	user_settings: settings of the default profile (users.xml), e.g.
#	  { input_format_skip_unknown_fields => 1 }.
#	timezone: server time zone (default UTC), used to parse and print
#	  DateTime values written without an offset.
sub new
{
	my ($class, %args) = @_;
	my $dir = $args{dir} // tempdir('walship_ch_XXXX', TMPDIR => 1, CLEANUP => 1);
	make_path($dir);
	$dir = abs_path($dir);
	my @cmd = _find_server()
	  or croak 'clickhouse-server not found: ' . (__PACKAGE__->available)[1];
	my $self = bless {
		dir => $dir,
		cmd => \@cmd,
		want_http_port => $args{http_port} // 0,
		want_tcp_port => $args{tcp_port} // 0,
		no_tcp => $args{no_tcp} ? 1 : 0,
		server_settings => $args{server_settings} // {},
		user_settings => $args{user_settings} // {},
		timezone => $args{timezone} // 'UTC',
		start_timeout => $args{start_timeout} // 60,
		http => HTTP::Tiny->new(timeout => _default_timeout(), keep_alive => 1),
		pid => undef,
		watchdog => undef,
		owner => $$,
	}, $class;
	$self->start;
	return $self;
}

sub _write_file
{
	my ($path, $text) = @_;
	open(my $fh, '>', $path) or croak "cannot write $path: $!";
	print $fh $text or croak "cannot write $path: $!";
	close($fh) or croak "cannot write $path: $!";
	return;
}

sub _write_config
{
	my ($self) = @_;
	my $d = $self->{dir};
	make_path(map { "$d/$_" } qw(data tmp user_files format_schemas log));

	# Server-wide settings: small caches (caps, allocated on demand), then
	# the caller's.
	my %server = (
		max_connections => 1024,
		keep_alive_timeout => 3,
		max_concurrent_queries => 100,
		uncompressed_cache_size => 67108864,
		mark_cache_size => 67108864,
		mlock_executable => 'false',
		%{ $self->{server_settings} });
	my $extra = '';
	for my $k (sort keys %server)
	{
		$extra .= "    <$k>" . _xml_escape($server{$k}) . "</$k>\n";
	}
	my $tcp = $self->{no_tcp} ? '' : "    <tcp_port>$self->{tcp_port}</tcp_port>\n";
	my $tz = _xml_escape($self->{timezone});

	# No <interserver_http_port>: 18.16 opens the replication port only
	# when it is configured.  No <https_port>/<tcp_port_secure>, no
	# <openSSL>: nothing reads /etc/clickhouse-server.
	_write_file("$d/config.xml", <<"EOF");
<?xml version="1.0"?>
<!-- Written by t/WalshipClickHouse.pm: a throwaway server, 127.0.0.1 only. -->
<yandex>
    <logger>
        <level>information</level>
        <log>$d/log/clickhouse-server.log</log>
        <errorlog>$d/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
        <console>0</console>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>$self->{http_port}</http_port>
$tcp    <path>$d/data/</path>
    <tmp_path>$d/tmp/</tmp_path>
    <user_files_path>$d/user_files/</user_files_path>
    <format_schema_path>$d/format_schemas/</format_schema_path>
    <users_config>$d/users.xml</users_config>
    <dictionaries_config>$d/no_dictionaries_*.xml</dictionaries_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>$tz</timezone>
    <query_log>
        <database>system</database>
        <table>query_log</table>
        <flush_interval_milliseconds>1000</flush_interval_milliseconds>
    </query_log>
$extra</yandex>
EOF

	my $profile = '';
	for my $k (sort keys %{ $self->{user_settings} })
	{
		$profile .= "            <$k>" . _xml_escape($self->{user_settings}{$k}) . "</$k>\n";
	}
	_write_file("$d/users.xml", <<"EOF");
<?xml version="1.0"?>
<!-- Written by t/WalshipClickHouse.pm. -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
$profile        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks replace="replace">
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
	return;
}

# Starts the server (on the same ports as before if it ran already) and
# waits until GET /ping answers "Ok.".  Returns $self.
sub start
{
	my ($self) = @_;
	croak 'clickhouse-server already running' if $self->{pid};
	my $attempts = 0;
	while (1)
	{
		$attempts++;
		my $picked = 0;
		$self->{http_port} //= $self->{want_http_port} || do { $picked = 1; _free_port() };
		$self->{tcp_port} //= $self->{no_tcp} ? undef : ($self->{want_tcp_port} || do { $picked = 1; _free_port() });
		if (defined $self->{tcp_port} && $self->{tcp_port} == $self->{http_port})
		{
			$self->{tcp_port} = undef;
			next;
		}
		$self->_write_config;
		my $err = $self->_spawn_and_wait;
		return $self unless defined $err;
		# A port taken between _free_port() and bind(): try others.
		if ($picked && $attempts < 5 && $err =~ /Address already in use|Net Exception: Address/i)
		{
			$self->{http_port} = undef unless $self->{want_http_port};
			$self->{tcp_port} = undef unless $self->{want_tcp_port};
			next;
		}
		croak $err;
	}
}

sub _spawn_and_wait
{
	my ($self) = @_;
	my $d = $self->{dir};
	my @cmd = (@{ $self->{cmd} }, "--config-file=$d/config.xml");
	my $log = "$d/log/clickhouse-server.log";
	my $log_offset = -s $log // 0;
	my $t0 = time;
	my $pid = fork;
	croak "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		# stdout/stderr to a file: a test's TAP pipe must not stay open
		# in the server (prove would wait for it).
		chdir $d;
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>>', "$d/log/stdout.log");
		open(STDERR, '>&', \*STDOUT);
		POSIX::setpgid(0, 0);    # no terminal signals (^C) to the server
		{ no warnings 'exec'; exec { $cmd[0] } @cmd; }
		print STDERR "exec $cmd[0]: $!\n";
		POSIX::_exit(127);
	}
	$self->{pid} = $pid;
	$self->_start_watchdog;

	my $deadline = time + $self->{start_timeout};
	my $ping = HTTP::Tiny->new(timeout => 2, keep_alive => 0);
	while (1)
	{
		my $r = $ping->get($self->url('/ping'));
		# "Ok." from our server, not from another one on a port taken since
		if ($r->{status} == 200 && $r->{content} =~ /^Ok\./
			&& _log_since($log, $log_offset) =~ /Listening http:\/\/127\.0\.0\.1:$self->{http_port}\b/)
		{
			$self->{startup_seconds} = time - $t0;
			return undef;
		}
		if (waitpid($pid, WNOHANG) == $pid)
		{
			my $status = $?;
			$self->{pid} = undef;
			$self->_stop_watchdog;
			return "clickhouse-server exited with status $status before answering /ping; "
			  . "see $d/log:\n" . $self->log_tail;
		}
		if (time > $deadline)
		{
			$self->stop;
			return "clickhouse-server did not answer /ping within $self->{start_timeout} s; "
			  . "see $d/log:\n" . $self->log_tail;
		}
		sleep 0.05;
	}
}

# The text appended to $file after byte $offset.
sub _log_since
{
	my ($file, $offset) = @_;
	open(my $fh, '<', $file) or return '';
	seek($fh, $offset, 0);
	local $/;
	my $text = <$fh>;
	close $fh;
	return $text // '';
}

# A process that stops the server if this (test) process dies without
# stopping it (die outside an eval, kill -9, a failed BAIL_OUT...).  It is
# a fresh perl (exec), so it holds none of this process's descriptors,
# such as the TAP pipe prove waits on.
my $WATCHDOG = <<'CODE';
use strict;
use Time::HiRes qw(sleep);
my ($owner, $server) = @ARGV;
# alive: signalable and not a zombie (an orphaned server waits for its reaper)
sub alive
{
	my ($p) = @_;
	return 0 unless kill 0, $p;
	open(my $fh, "<", "/proc/$p/stat") or return 1;
	my $stat = <$fh> // "";
	return ($stat =~ /\) (\S) / && $1 eq "Z") ? 0 : 1;
}
$0 = "walship clickhouse watchdog (server $server, owner $owner)";
$SIG{TERM} = sub { exit 0 };
while (1)
{
	sleep 0.5;
	exit 0 unless alive($server);
	next if alive($owner);
	kill 'TERM', $server;
	for (1 .. 300)
	{
		exit 0 unless alive($server);
		sleep 0.1;
	}
	kill 'KILL', $server;
	exit 0;
}
CODE

sub _start_watchdog
{
	my ($self) = @_;
	my ($owner, $server) = ($$, $self->{pid});
	my $wd = fork;
	croak "fork: $!" unless defined $wd;
	if ($wd == 0)
	{
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>>', "$self->{dir}/log/stdout.log");
		open(STDERR, '>&', \*STDOUT);
		POSIX::setpgid(0, 0);
		{ no warnings 'exec'; exec { $^X } $^X, '-e', $WATCHDOG, $owner, $server; }
		POSIX::_exit(127);
	}
	$self->{watchdog} = $wd;
	return;
}

sub _stop_watchdog
{
	my ($self) = @_;
	my $wd = $self->{watchdog} or return;
	kill 'TERM', $wd;
	waitpid($wd, 0);
	$self->{watchdog} = undef;
	return;
}

# Last lines of the server's logs (error log first).
sub log_tail
{
	my ($self, $lines) = @_;
	$lines //= 20;
	my $out = '';
	for my $f (qw(clickhouse-server.err.log stdout.log))
	{
		open(my $fh, '<', "$self->{dir}/log/$f") or next;
		my @l = <$fh>;
		close $fh;
		splice(@l, 0, @l - $lines) if @l > $lines;
		$out .= "--- log/$f ---\n" . join('', @l) if @l;
	}
	return $out;
}

# Stops the server: SIGTERM, SIGKILL after $timeout (default 30) seconds.
# Returns its exit status ($? style), or undef if it was not running.
sub stop
{
	my ($self, $signal, $timeout) = @_;
	my $pid = $self->{pid};
	return undef unless $pid;
	$signal //= 'TERM';
	$timeout //= 30;
	# Drop our keep-alive connection first: the server waits for open HTTP
	# connections to go idle for keep_alive_timeout before it exits.
	$self->{http} = HTTP::Tiny->new(timeout => _default_timeout(), keep_alive => 1);
	my $t0 = time;
	kill $signal, $pid;
	my $status;
	while (1)
	{
		my $r = waitpid($pid, WNOHANG);
		if ($r == $pid) { $status = $?; last; }
		if ($r == -1) { $status = undef; last; }
		if (time - $t0 > $timeout)
		{
			kill 'KILL', $pid;
			waitpid($pid, 0);
			$status = $?;
			last;
		}
		sleep 0.02;
	}
	$self->{stop_seconds} = time - $t0;
	$self->{pid} = undef;
	$self->_stop_watchdog;
	return $status;
}

# SIGKILL the server (data written before is kept; restart with start()).
sub kill9 { return $_[0]->stop('KILL'); }

sub restart
{
	my ($self) = @_;
	$self->stop;
	return $self->start;
}

sub DESTROY
{
	my ($self) = @_;
	local ($., $@, $!, $^E, $?);
	$self->stop if $self->{pid} && $self->{owner} == $$;
	return;
}

sub is_running { return defined $_[0]->{pid}; }
sub pid { return $_[0]->{pid}; }
sub dir { return $_[0]->{dir}; }
sub http_port { return $_[0]->{http_port}; }
sub port { return $_[0]->{http_port}; }
sub tcp_port { return $_[0]->{tcp_port}; }
sub startup_seconds { return $_[0]->{startup_seconds}; }
sub server_command { return @{ $_[0]->{cmd} }; }

# Resident memory of the server in kB (VmRSS), or undef.
sub rss_kb
{
	my ($self) = @_;
	return undef unless $self->{pid};
	open(my $fh, '<', "/proc/$self->{pid}/status") or return undef;
	while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)/; }
	return undef;
}

# "http://127.0.0.1:PORT/path?query" ($path optional, leading "/" optional).
sub url
{
	my ($self, $path) = @_;
	$path //= '/';
	$path = "/$path" unless $path =~ m{^/};
	return "http://127.0.0.1:$self->{http_port}$path";
}

# "?k=v&k2=v2" from a settings hashref (sorted; "" if none).
sub _settings_qs
{
	my ($settings) = @_;
	return '' unless $settings && %$settings;
	return join('&', map { uri_escape($_) . '=' . uri_escape($settings->{$_}) } sort keys %$settings);
}

# URL of "INSERT INTO $table FORMAT $format" (JSONEachRow by default) with
# optional settings, e.g. insert_url('shop.{table}') for walship.endpoint
# ("{" and "}" stay as they are so walship can substitute them).
sub insert_url
{
	my ($self, $table, %opt) = @_;
	my $format = $opt{format} // 'JSONEachRow';
	my $q = uri_escape("INSERT INTO $table FORMAT $format");
	$q =~ s/%7B/{/g;
	$q =~ s/%7D/}/g;
	my $s = _settings_qs($opt{settings});
	return $self->url("/?query=$q" . ($s ne '' ? "&$s" : ''));
}

# Raw request: request($method, $path_and_query, $body, \%headers) returns
# the HTTP::Tiny response hashref (status, reason, headers, content),
# whatever the status.
sub request
{
	my ($self, $method, $path, $body, $headers) = @_;
	my %o = (headers => { %{ $headers // {} } });
	$o{content} = $body if defined $body;
	return $self->{http}->request($method, $self->url($path), \%o);
}

sub _die_response
{
	my ($what, $r) = @_;
	my $msg = $r->{content} // '';
	$msg =~ s/\s+\z//;
	# HTTP::Tiny's own errors (connection refused...) come as status 599
	croak "clickhouse: $what: HTTP $r->{status}"
	  . ($r->{status} == 599 ? " (no answer)" : " $r->{reason}") . ": $msg";
}

# query($sql, settings => {...}) POSTs $sql to the HTTP interface and returns
# the body; dies with ClickHouse's exception text on a non-2xx answer.
sub query
{
	my ($self, $sql, %opt) = @_;
	my $s = _settings_qs($opt{settings});
	my $r = $self->request('POST', '/' . ($s ne '' ? "?$s" : ''), $sql);
	_die_response($sql =~ s/\s+/ /gr, $r) unless $r->{success};
	return $r->{content};
}

# query_rows($select) runs "$select FORMAT JSONEachRow" and returns an
# arrayref of hashrefs.  Note that 18.16 prints 64-bit integers as JSON
# strings (output_format_json_quote_64bit_integers=1).
sub query_rows
{
	my ($self, $sql, %opt) = @_;
	my $body = $self->query("$sql FORMAT JSONEachRow", %opt);
	my $json = JSON::PP->new->utf8;
	return [ map { $json->decode($_) } grep { $_ ne '' } split /\n/, $body ];
}

# query_value($select) returns the first column of the first row (TSV,
# unescaped only for the trailing newline), or undef if no row.
sub query_value
{
	my ($self, $sql, %opt) = @_;
	my $body = $self->query("$sql FORMAT TSV", %opt);
	return undef if $body eq '';
	my ($first) = split /\n/, $body;
	return (split /\t/, $first)[0];
}

# insert(table => 'db.t', body => $ndjson, gzip => 1, settings => {...},
#        format => 'JSONEachRow', headers => {...}) POSTs a data body as
# walship does; returns the HTTP::Tiny response (does not die).
sub insert
{
	my ($self, %opt) = @_;
	my $body = $opt{body} // '';
	my %h = %{ $opt{headers} // {} };
	if ($opt{gzip})
	{
		require IO::Compress::Gzip;
		my $z;
		IO::Compress::Gzip::gzip(\$body => \$z)
		  or croak "gzip failed: " . do { no warnings "once"; $IO::Compress::Gzip::GzipError };
		$body = $z;
		$h{'Content-Encoding'} = 'gzip';
	}
	$h{'Content-Type'} //= 'application/x-ndjson';
	my $url = $self->insert_url($opt{table}, format => $opt{format}, settings => $opt{settings});
	$url =~ s{^http://127\.0\.0\.1:\d+}{};
	return $self->request('POST', $url, $body, \%h);
}

# version() as the server reports it ("18.16.1").
sub version
{
	my ($self) = @_;
	return $self->{version} //= $self->query_value('SELECT version()');
}

1;
