# Copyright (c) walship developers
#
# t/WalshipHttpSink.pm
#	  A scriptable HTTP ingestion endpoint for the walship TAP tests: starts
#	  t/http_sink.py (next to this file) on 127.0.0.1 and reads what it
#	  recorded.  See the header of t/http_sink.py for the request record and
#	  the control.json semantics.
#
#	  use FindBin;
#	  use lib $FindBin::RealBin;
#	  use WalshipHttpSink;
#
#	  my $sink = WalshipHttpSink->new(dir => "$tmp/sink");
#	  $node->append_conf('postgresql.conf',
#	      "walship.endpoint = '" . $sink->url('/ingest') . "'");
#	  $sink->set_behaviour({ default => { status => 204 },
#	                         script  => [ { status => 500 } ] });
#	  $sink->wait_for(sub { grep { $_->{status} == 204 } @{ $_[0] } })
#	      or die "nothing acknowledged";
#	  my @bodies = $sink->bodies;
#
# IDENTIFICATION
#	  t/WalshipHttpSink.pm

package WalshipHttpSink;

use strict;
use warnings;

use Carp;
use Cwd qw(abs_path);
use Digest::SHA qw(sha256_hex);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Spec;
use File::Temp qw(tempdir);
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

our $SCRIPT = File::Spec->catfile(dirname(abs_path(__FILE__)), 'http_sink.py');

my $json = JSON::PP->new->canonical->utf8;
my $generation_counter = 0;

# Seconds to wait for a condition unless told otherwise: the TAP suite's
# default when PostgreSQL::Test::Utils is loaded, else 180.
sub _default_timeout
{
	no warnings 'once';
	return $PostgreSQL::Test::Utils::timeout_default // $ENV{PG_TEST_TIMEOUT_DEFAULT} // 180;
}

sub _python
{
	return $ENV{WALSHIP_PYTHON} if $ENV{WALSHIP_PYTHON};
	return '/usr/bin/python3' if -x '/usr/bin/python3';
	return 'python3';
}

# new(dir => $dir, port => $port, zstd_cli => 1, behaviour => {...})
#	dir: state directory (created; default: a temporary one removed at exit).
#	port: port to listen on (default 0: an ephemeral one).
#	zstd_cli: decode zstd with the zstd CLI even if the Python module is there.
#	behaviour: written with set_behaviour before the server starts.
sub new
{
	my ($class, %args) = @_;
	my $dir = $args{dir} // tempdir('walship_sink_XXXX', TMPDIR => 1, CLEANUP => 1);
	make_path($dir);
	$dir = abs_path($dir);
	my $self = bless {
		dir => $dir,
		port => $args{port} // 0,
		zstd_cli => $args{zstd_cli} ? 1 : 0,
		pid => undef,
		owner => $$,
	}, $class;
	$self->set_behaviour($args{behaviour}) if $args{behaviour};
	$self->start;
	return $self;
}

# Starts the server (on the same port as before if it ran already) and waits
# until it listens.  Returns $self.
sub start
{
	my ($self) = @_;
	croak 'http sink already running' if $self->{pid};
	my $portfile = "$self->{dir}/port";
	unlink $portfile;
	my @cmd = (
		_python(), $SCRIPT,
		'--dir' => $self->{dir},
		'--port-file' => $portfile,
		'--port' => $self->{port},
		'--watch-pid' => $$);
	push @cmd, '--zstd-cli' if $self->{zstd_cli};

	my $pid = fork;
	croak "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>>', "$self->{dir}/sink.log");
		open(STDERR, '>&', \*STDOUT);
		{ no warnings "exec"; exec { $cmd[0] } @cmd; }
		print STDERR "exec $cmd[0]: $!\n";
		POSIX::_exit(127);
	}
	$self->{pid} = $pid;

	my $deadline = time + 30;
	while (1)
	{
		if (open(my $fh, '<', $portfile))
		{
			my $port = <$fh>;
			close $fh;
			if (defined $port && $port =~ /^(\d+)\n/)
			{
				$self->{port} = $1;
				last;
			}
		}
		if (waitpid($pid, WNOHANG) == $pid)
		{
			$self->{pid} = undef;
			croak "http sink exited with status $? before listening; see $self->{dir}/sink.log:\n"
			  . $self->_log_tail;
		}
		if (time > $deadline)
		{
			$self->stop;
			croak "http sink did not start within 30 s; see $self->{dir}/sink.log:\n"
			  . $self->_log_tail;
		}
		sleep 0.02;
	}
	return $self;
}

sub _log_tail
{
	my ($self) = @_;
	open(my $fh, '<', "$self->{dir}/sink.log") or return '';
	my @lines = <$fh>;
	close $fh;
	splice(@lines, 0, @lines - 20) if @lines > 20;
	return join('', @lines);
}

# Stops the server: SIGTERM (requests in flight are recorded as "aborted"),
# SIGKILL after 10 s.  Returns its exit status ($? style: 0 = clean), or
# undef if it was not running.
sub stop
{
	my ($self, $signal) = @_;
	my $pid = $self->{pid};
	return undef unless $pid;
	$signal //= 'TERM';
	kill $signal, $pid;
	my $deadline = time + 10;
	my $status;
	while (1)
	{
		my $r = waitpid($pid, WNOHANG);
		if ($r == $pid) { $status = $?; last; }
		if ($r == -1) { $status = undef; last; }
		if (time > $deadline)
		{
			kill 'KILL', $pid;
			waitpid($pid, 0);
			$status = $?;
			last;
		}
		sleep 0.02;
	}
	$self->{pid} = undef;
	return $status;
}

# SIGKILL: no records for requests in flight (their bodies are stored).
sub kill9
{
	my ($self) = @_;
	return $self->stop('KILL');
}

# Stops and starts again on the same port; the request sequence, the script
# position and the behaviour carry over.  Returns $self.
sub restart
{
	my ($self) = @_;
	$self->stop;
	return $self->start;
}

sub is_running { return defined $_[0]->{pid}; }
sub pid { return $_[0]->{pid}; }
sub port { return $_[0]->{port}; }
sub dir { return $_[0]->{dir}; }

# "http://127.0.0.1:PORT/path" ($path optional, leading "/" optional).
sub url
{
	my ($self, $path) = @_;
	$path //= '/';
	$path = "/$path" unless $path =~ m{^/};
	return "http://127.0.0.1:$self->{port}$path";
}

sub _write_json_atomic
{
	my ($self, $name, $data) = @_;
	my $path = "$self->{dir}/$name";
	my $tmp = "$path.tmp.$$";
	open(my $fh, '>', $tmp) or croak "cannot write $tmp: $!";
	print $fh $json->encode($data) or croak "cannot write $tmp: $!";
	close($fh) or croak "cannot write $tmp: $!";
	rename($tmp, $path) or croak "cannot rename $tmp to $path: $!";
	return;
}

# The current control.json as a hashref ({} if none).
sub behaviour
{
	my ($self) = @_;
	my $path = "$self->{dir}/control.json";
	return {} unless -e $path;
	open(my $fh, '<', $path) or croak "cannot read $path: $!";
	local $/;
	my $text = <$fh>;
	close $fh;
	return $json->decode($text);
}

# Replaces control.json (atomically) with a copy of $hashref and a new
# "generation" (unless $hashref has one), so its "script" is served from its
# first entry on the next request.
sub set_behaviour
{
	my ($self, $behaviour) = @_;
	my %c = %{ $behaviour // {} };
	$c{generation} //= sprintf('%d.%d.%.6f', $$, ++$generation_counter, time);
	$self->_write_json_atomic('control.json', \%c);
	return;
}

# Appends entries to the current script, keeping its generation: they are
# served right after the entries not consumed yet (or at once, if the
# script was exhausted).
sub append_script
{
	my ($self, @entries) = @_;
	my $c = $self->behaviour;
	push @{ $c->{script} }, @entries;
	$c->{generation} //= sprintf('%d.%d.%.6f', $$, ++$generation_counter, time);
	$self->_write_json_atomic('control.json', $c);
	return;
}

# Sets only the "default" behaviour, keeping the script and its position.
sub set_default
{
	my ($self, $default) = @_;
	my $c = $self->behaviour;
	$c->{default} = $default;
	$c->{generation} //= sprintf('%d.%d.%.6f', $$, ++$generation_counter, time);
	$self->_write_json_atomic('control.json', $c);
	return;
}

# Sets or clears "down" mode (connections closed at once, no answer),
# keeping everything else.
sub set_down
{
	my ($self, $down) = @_;
	my $c = $self->behaviour;
	$c->{down} = $down ? JSON::PP::true : JSON::PP::false;
	$c->{generation} //= sprintf('%d.%d.%.6f', $$, ++$generation_counter, time);
	$self->_write_json_atomic('control.json', $c);
	return;
}

sub _state
{
	my ($self) = @_;
	open(my $fh, '<', "$self->{dir}/state.json") or return {};
	local $/;
	my $text = <$fh>;
	close $fh;
	my $st = eval { $json->decode($text) };
	return $st // {};
}

# Number of script entries consumed in the current generation.
sub script_position { return $_[0]->_state->{position} // 0; }

# Sequence number of the last request that has arrived (including ones not
# answered yet); 0 if none.
sub last_seq { return ($_[0]->_state->{next_seq} // 1) - 1; }

sub _read_jsonl
{
	my ($self, $name) = @_;
	my $path = "$self->{dir}/$name";
	open(my $fh, '<', $path) or return ();
	local $/;
	my $text = <$fh>;
	close $fh;
	my @records;
	for my $line (split /\n/, $text)
	{
		next if $line eq '';
		my $r = eval { $json->decode($line) };
		push @records, $r if $r;
	}
	# a last line without its newline is being written: skip it
	pop @records if @records && $text !~ /\n\z/;
	return @records;
}

# The recorded requests (answered, dropped or aborted; not those still in
# flight), sorted by seq (arrival order).  In scalar context an arrayref.
# With since => $seq, only those with a larger seq.
sub requests
{
	my ($self, %opt) = @_;
	my @r = sort { $a->{seq} <=> $b->{seq} } $self->_read_jsonl('requests.jsonl');
	@r = grep { $_->{seq} > $opt{since} } @r if defined $opt{since};
	return wantarray ? @r : \@r;
}

# One request record by seq, or undef.
sub request
{
	my ($self, $seq) = @_;
	my ($r) = grep { $_->{seq} == $seq } $self->requests;
	return $r;
}

# Connections closed because of "down" mode, as records {t, client_port,
# connection}.
sub refused
{
	my ($self) = @_;
	my @r = $self->_read_jsonl('refused.jsonl');
	return wantarray ? @r : \@r;
}

# The decoded body of request $seq (bytes), or undef if none was stored.
sub body
{
	my ($self, $seq) = @_;
	my $path = "$self->{dir}/bodies/$seq.bin";
	open(my $fh, '<:raw', $path) or return undef;
	local $/;
	my $data = <$fh>;
	close $fh;
	return $data // '';
}

# Decoded bodies of the recorded requests that have one, in arrival order.
# Options: since => $seq; status => N or [N, ...] (only requests answered
# with one of these statuses, e.g. status => [200, 204] for acknowledged
# batches); include_unanswered => 1 (also bodies of requests still in
# flight, which have no record yet).
sub bodies
{
	my ($self, %opt) = @_;
	my @seqs;
	if ($opt{include_unanswered})
	{
		opendir(my $dh, "$self->{dir}/bodies") or return ();
		@seqs = sort { $a <=> $b } map { /^(\d+)\.bin$/ ? $1 : () } readdir $dh;
		closedir $dh;
		@seqs = grep { $_ > $opt{since} } @seqs if defined $opt{since};
	}
	else
	{
		my @r = $self->requests(since => $opt{since});
		@r = grep { defined $_->{body_file} } @r;
		if (defined $opt{status})
		{
			my %ok = map { $_ => 1 } (ref $opt{status} ? @{ $opt{status} } : $opt{status});
			@r = grep { defined $_->{status} && $ok{ $_->{status} } } @r;
		}
		@seqs = map { $_->{seq} } @r;
	}
	my @bodies = map { $self->body($_) } @seqs;
	return wantarray ? @bodies : \@bodies;
}

# Polls (every 50 ms) until $cond->(\@requests, $self) returns true, and
# returns that value; returns undef after $timeout seconds (default: the TAP
# suite's default timeout).
sub wait_for
{
	my ($self, $cond, $timeout) = @_;
	$timeout //= _default_timeout();
	my $deadline = time + $timeout;
	while (1)
	{
		my $v = $cond->(scalar($self->requests), $self);
		return $v if $v;
		return undef if time > $deadline;
		sleep 0.05;
	}
}

# Waits until at least $n requests are recorded; returns them (arrayref) or
# undef on timeout.
sub wait_for_requests
{
	my ($self, $n, $timeout) = @_;
	return $self->wait_for(sub { @{ $_[0] } >= $n ? $_[0] : undef }, $timeout);
}

# SHA-256 (hex) of an Authorization header value, to compare with a
# record's auth_sha256: sha256_hex("Bearer $token").
sub auth_sha256 { shift if ref $_[0] || $_[0] eq __PACKAGE__; return sha256_hex($_[0]); }

sub DESTROY
{
	my ($self) = @_;
	local ($., $@, $!, $^E, $?);
	# only the process that started it (not a forked child) stops it
	$self->stop if $self->{pid} && $self->{owner} == $$;
}

1;
