# Copyright (c) walship developers
#
# t/WalshipChdb.pm
#	  ClickHouse 26 for the walship TAP tests: t/chdb_http.js (a thin HTTP
#	  adapter over chdb, ClickHouse 26.7 as a library from npm) run by node
#	  as the current, unprivileged user, on a free 127.0.0.1 port, with its
#	  data directory and log in one directory.  Tests only: it is not a
#	  ClickHouse server (docs/clickhouse.md, "The ClickHouse 26 tests").
#
#	  It offers the interface of t/WalshipClickHouse.pm (the 18.16 server):
#	  url(), insert_url(), request(), query(), query_rows(), query_value(),
#	  insert(), version(), stop(), start(), kill9(), plus the adapter's test
#	  hooks lose_acks() and inserts().
#
#	  use WalshipChdb;
#	  my ($ok, $why) = WalshipChdb->available;
#	  plan skip_all => "ClickHouse 26 (chdb) is not available: $why" unless $ok;
#	  my $ch = WalshipChdb->new(dir => "$tmp/chdb");
#
#	  test/run-all.sh installs chdb with npm into a cache and says where
#	  in WALSHIP_CHDB_MODULES; when it could not, WALSHIP_CHDB_UNAVAILABLE
#	  holds the reason.  With WALSHIP_REQUIRE_CHDB=1, available() dies
#	  instead of returning false, so the test fails rather than skips.
#
# IDENTIFICATION
#	  t/WalshipChdb.pm

package WalshipChdb;

use strict;
use warnings;

use Carp;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

use WalshipClickHouse;
our @ISA = ('WalshipClickHouse');

my $ADAPTER = abs_path(dirname(__FILE__)) . '/chdb_http.js';

sub _modules
{
	for my $dir ($ENV{WALSHIP_CHDB_MODULES}, '/var/cache/walship-test/chdb/node_modules')
	{
		return $dir if defined $dir && -f "$dir/chdb/package.json";
	}
	return undef;
}

# Class method: (1, "node ... chdb X") or (0, "why not").  Dies instead of
# returning false under WALSHIP_REQUIRE_CHDB=1.
sub available
{
	my ($class) = @_;
	my @r;
	my $modules = _modules();
	my $node = `sh -c 'command -v node' 2>/dev/null`;
	chomp $node;
	if ($ENV{WALSHIP_CHDB_UNAVAILABLE})
	{
		@r = (0, $ENV{WALSHIP_CHDB_UNAVAILABLE});
	}
	elsif ($node eq '')
	{
		@r = (0, 'node is not installed (test/run-all.sh installs nodejs)');
	}
	elsif (!defined $modules)
	{
		@r = (0, 'the npm package chdb is not installed (test/run-all.sh installs it '
			  . 'into /var/cache/walship-test/chdb; or set WALSHIP_CHDB_MODULES)');
	}
	else
	{
		@r = (1, "$node $ADAPTER, chdb in $modules");
	}
	croak "WALSHIP_REQUIRE_CHDB=1 but ClickHouse 26 (chdb) is not available: $r[1]"
	  if !$r[0] && ($ENV{WALSHIP_REQUIRE_CHDB} // '') eq '1';
	return wantarray ? @r : $r[0];
}

# new(dir => $dir, http_port => 0|N, start_timeout => $seconds)
#	dir: the adapter's directory (data/ is chdb's data directory, kept
#	  across stop() and start(); log/ its output).
sub new
{
	my ($class, %args) = @_;
	my $dir = $args{dir} // tempdir('walship_chdb_XXXX', TMPDIR => 1, CLEANUP => 1);
	make_path("$dir/data", "$dir/log");
	$dir = abs_path($dir);
	my $modules = _modules()
	  or croak 'chdb not found: ' . ($class->available)[1];
	my $self = bless {
		dir => $dir,
		modules => $modules,
		cmd => [ 'node', $ADAPTER ],
		want_http_port => $args{http_port} // 0,
		start_timeout => $args{start_timeout} // 120,
		http => HTTP::Tiny->new(timeout => WalshipClickHouse::_default_timeout(), keep_alive => 1),
		pid => undef,
		watchdog => undef,
		owner => $$,
	}, $class;
	$self->start;
	return $self;
}

sub start
{
	my ($self) = @_;
	croak 'chdb adapter already running' if $self->{pid};
	for my $attempt (1 .. 5)
	{
		my $picked = !$self->{want_http_port};
		$self->{http_port} = $self->{want_http_port} || WalshipClickHouse::_free_port();
		my $err = $self->_spawn_and_wait;
		return $self unless defined $err;
		# a port taken between _free_port() and listen(): try another
		next if $picked && $err =~ /EADDRINUSE|status 25088\b/;
		croak $err;
	}
	croak 'chdb adapter: no free port after 5 attempts';
}

sub _spawn_and_wait
{
	my ($self) = @_;
	my $d = $self->{dir};
	my @cmd = (@{ $self->{cmd} }, '--port', $self->{http_port}, '--data', "$d/data",
		'--modules', $self->{modules});
	my $log = "$d/log/stdout.log";
	my $log_offset = -s $log // 0;
	my $t0 = time;
	my $pid = fork;
	croak "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		chdir $d;
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>>', $log);
		open(STDERR, '>&', \*STDOUT);
		POSIX::setpgid(0, 0);
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
		if ($r->{status} == 200 && $r->{content} =~ /^Ok\./
			&& WalshipClickHouse::_log_since($log, $log_offset) =~ /Listening http:\/\/127\.0\.0\.1:$self->{http_port}\b/)
		{
			$self->{startup_seconds} = time - $t0;
			return undef;
		}
		if (waitpid($pid, WNOHANG) == $pid)
		{
			my $status = $?;
			$self->{pid} = undef;
			$self->_stop_watchdog;
			return "chdb adapter exited with status $status before answering /ping:\n"
			  . $self->log_tail;
		}
		if (time > $deadline)
		{
			$self->stop;
			return "chdb adapter did not answer /ping within $self->{start_timeout} s:\n"
			  . $self->log_tail;
		}
		sleep 0.05;
	}
}

sub log_tail
{
	my ($self, $lines) = @_;
	$lines //= 20;
	open(my $fh, '<', "$self->{dir}/log/stdout.log") or return '';
	my @l = <$fh>;
	close $fh;
	splice(@l, 0, @l - $lines) if @l > $lines;
	return "--- log/stdout.log ---\n" . join('', @l);
}

sub tcp_port { return undef; }

# insert(...) as WalshipClickHouse's, and zstd => 1 compresses the body
# with Debian's zstd program (Content-Encoding: zstd).
sub insert
{
	my ($self, %opt) = @_;
	return $self->SUPER::insert(%opt) unless $opt{zstd};
	my $file = File::Temp->new(DIR => $self->{dir});
	binmode $file;
	print $file ($opt{body} // '');
	close $file;
	my $z = `zstd -q -c $file`;
	croak "zstd failed: $?" if $? != 0;
	my %h = (%{ $opt{headers} // {} }, 'Content-Encoding' => 'zstd');
	return $self->SUPER::insert(%opt, zstd => 0, body => $z, headers => \%h);
}

# lose_acks($count, $mode): the next $count INSERTs are stored and then
# answered with a 500 (mode 'error', default) or a closed connection
# (mode 'close'), as when an acknowledgement is lost.
sub lose_acks
{
	my ($self, $count, $mode) = @_;
	my $r = $self->request('POST', "/walship-test/lose-acks?count=$count&mode=" . ($mode // 'error'));
	WalshipClickHouse::_die_response('lose-acks', $r) unless $r->{success};
	return;
}

# inserts(): arrayref of the INSERTs run so far, each a hashref with
# query, settings (hashref), bytes and acknowledged (JSON booleans).
sub inserts
{
	my ($self) = @_;
	my $r = $self->request('GET', '/walship-test/inserts');
	WalshipClickHouse::_die_response('inserts', $r) unless $r->{success};
	my $json = JSON::PP->new->utf8;
	return [ map { $json->decode($_) } grep { $_ ne '' } split /\n/, $r->{content} ];
}

1;
