#!/usr/bin/python3
#
# t/http_sink.py
#	  A scriptable HTTP/1.1 ingestion endpoint for the walship TAP tests.
#
# The tests drive it through t/WalshipHttpSink.pm; it can also be run by
# hand:
#
#	  /usr/bin/python3 t/http_sink.py --dir STATE_DIR --port-file FILE
#	      [--port N] [--host 127.0.0.1] [--watch-pid PID] [--zstd-cli]
#
# It listens on 127.0.0.1 (port 0 = an ephemeral port unless --port is
# given; SO_REUSEADDR is set so that a restarted sink can take the same port
# back at once), writes the port to --port-file (atomically) once it is
# listening, and serves until SIGTERM or SIGINT (exit status 0), or until the
# process --watch-pid is gone.
#
# Every POST or PUT, on any path, is one "request":
#	  - it gets a sequence number (1, 2, ... across restarts of the same
#	    state dir) and consumes the next behaviour (see below) as soon as
#	    its headers are read;
#	  - its body (Content-Length or chunked) is read and decoded per
#	    Content-Encoding (identity, gzip, x-gzip, deflate, zstd, or a
#	    comma-separated chain of them) and stored in bodies/<seq>.bin;
#	  - it is answered per its behaviour, and one JSON line is appended to
#	    requests.jsonl just before the answer is sent (or the connection
#	    closed), so a client that has seen an answer always finds the
#	    record; the file is in completion order (sort by "seq" for arrival
#	    order).  Requests still
#	    in flight when the sink is stopped with SIGTERM get a line with
#	    "action": "aborted" before it exits (a SIGKILL loses them; their
#	    bodies are in bodies/ already).
#
# The request record (keys always present, null when not applicable):
#	  seq, t_received, t_answered (Unix time, float seconds; t_received is
#	  when the headers were read, t_answered just before the answer was
#	  sent or the connection closed), method, path (path and query), content_type,
#	  content_encoding, batch_id (Walship-Batch-Id), user_agent,
#	  auth_present (bool), auth_sha256 (hex SHA-256 of the whole
#	  Authorization header value, e.g. of "Bearer TOKEN"; the value itself is
#	  never written anywhere), headers (every other request header, names
#	  lower-cased; Authorization, Proxy-Authorization and Cookie are left
#	  out), connection (id of the TCP connection, 1, 2, ... per sink process
#	  run), conn_request (1 for the first request on that connection, 2 for
#	  the second one on the same keep-alive connection, ...), script_index
#	  (index into "script" of the behaviour used, null for the default),
#	  generation (of control.json at that moment), behaviour (the behaviour
#	  object applied), action ("respond", "drop", "reset", "aborted",
#	  "bad_request"), status (the HTTP status sent, null if none was sent),
#	  wire_len (body bytes as received), body_len (decoded bytes), body_file
#	  ("bodies/<seq>.bin", relative to the state dir, null when no body was
#	  read), error (a decoding or I/O problem, else null).
#
# Behaviour: control.json in the state dir, re-read on every request (a
# missing file means {"default": {"status": 204}}; a file that does not
# parse is ignored in favour of the last one that did, with a warning):
#
#	  {"generation": ANY, "down": false,
#	   "default": BEHAVIOUR, "script": [BEHAVIOUR, ...]}
#
#	  - "script" entries are consumed strictly one per request, in request
#	    arrival order (the moment its headers are read), under a lock.  The
#	    position is the number of entries consumed so far; it only moves
#	    while there is an entry at that position, so a request that finds
#	    the script exhausted gets "default" and does not move it.  Hence
#	    appending entries to "script" (same generation) makes exactly those
#	    entries the next ones served.
#	  - "generation": whenever its value differs from the one seen on the
#	    previous request, the position resets to 0 (a new script starts from
#	    its first entry).  WalshipHttpSink->set_behaviour writes a fresh
#	    generation each call; ->append_script keeps it.
#	  - The position, generation and next sequence number live in state.json
#	    in the state dir, so they survive a restart of the sink.
#	  - "paths": {PATH: BEHAVIOUR, ...}: a request whose path (path and query,
#	    exactly as sent, percent-encoding included) is a key gets that
#	    behaviour, whatever the script; it consumes no script entry, and its
#	    script_index is null.
#	  - "down": true: every new connection, and every request arriving on an
#	    open one, is closed at once with a TCP reset, without an answer and
#	    without reading it; nothing is consumed or stored, and a line is
#	    appended to refused.jsonl instead.  (For a real outage, stop the sink:
#	    connections are then refused.)
#
# A BEHAVIOUR is an object; every key is optional:
#	  status       HTTP status to answer (default 204)
#	  delay_ms     sleep this long (in the request's own thread: other
#	               requests proceed meanwhile) before answering / dropping
#	  retry_after  value of a Retry-After header (seconds or HTTP date)
#	  headers      object of extra response headers
#	  body         response body (string; Content-Type text/plain unless
#	               content_type is given); ignored for 204 and 304
#	  content_type Content-Type of the response body
#	  close        true: answer with "Connection: close" and close afterwards
#	  drop         true: close the connection (FIN) without any answer
#	  reset        true: close the connection with a TCP reset (RST), no answer
#	  before_body  with drop or reset: close before reading the body
#	               (nothing stored)
# A body that cannot be decoded is answered 400 whatever the behaviour (the
# behaviour is still consumed); the raw bytes go to bodies/<seq>.raw.
#
# GET and HEAD answer 200 "walship http sink" and are not recorded.
#
# IDENTIFICATION
#	  t/http_sink.py
#

import argparse
import gzip
import hashlib
import http.server
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

try:
	import zstandard
except ImportError:
	zstandard = None

SECRET_HEADERS = ('authorization', 'proxy-authorization', 'cookie')


def log(msg):
	sys.stderr.write('http_sink[%d] %s: %s\n' %
					 (os.getpid(), time.strftime('%H:%M:%S'), msg))
	sys.stderr.flush()


def write_atomic(path, data):
	tmp = '%s.tmp.%d.%d' % (path, os.getpid(), threading.get_ident())
	with open(tmp, 'w') as f:
		f.write(data)
	os.replace(tmp, path)


class SinkState:
	"""Everything shared between handler threads: counters, control."""

	def __init__(self, state_dir, zstd_cli):
		self.dir = state_dir
		self.zstd_cli = zstd_cli or zstandard is None
		self.lock = threading.Lock()
		self.closing = False
		self.inflight = {}			# seq -> partial record
		self.conn_counter = 0
		self.last_control = {}
		self.control_mtime = None
		os.makedirs(os.path.join(state_dir, 'bodies'), exist_ok=True)
		self.state_path = os.path.join(state_dir, 'state.json')
		self.control_path = os.path.join(state_dir, 'control.json')
		self.requests_path = os.path.join(state_dir, 'requests.jsonl')
		self.refused_path = os.path.join(state_dir, 'refused.jsonl')
		try:
			with open(self.state_path) as f:
				st = json.load(f)
		except (OSError, ValueError):
			st = {}
		self.next_seq = int(st.get('next_seq', 1))
		self.position = int(st.get('position', 0))
		self.generation = st.get('generation')
		# Sequence numbers stay unique even if state.json was lost.
		try:
			with open(self.requests_path) as f:
				for line in f:
					try:
						self.next_seq = max(self.next_seq,
											int(json.loads(line)['seq']) + 1)
					except (ValueError, KeyError, TypeError):
						pass
		except OSError:
			pass

	def save_state(self):
		write_atomic(self.state_path, json.dumps({
			'next_seq': self.next_seq,
			'position': self.position,
			'generation': self.generation,
		}))

	def control(self):
		"""The current control.json (caller holds the lock)."""
		try:
			with open(self.control_path) as f:
				text = f.read()
		except FileNotFoundError:
			self.last_control = {}
			return self.last_control
		except OSError as e:
			log('cannot read control.json: %s' % e)
			return self.last_control
		try:
			c = json.loads(text)
			if not isinstance(c, dict):
				raise ValueError('not a JSON object')
			self.last_control = c
		except ValueError as e:
			log('control.json ignored (%s); using the previous one' % e)
		return self.last_control

	def is_down(self):
		with self.lock:
			return bool(self.control().get('down'))

	def next_conn_id(self):
		with self.lock:
			self.conn_counter += 1
			return self.conn_counter

	def begin_request(self, record):
		"""Assign a sequence number and consume a behaviour.

		Returns (seq, behaviour, down)."""
		with self.lock:
			c = self.control()
			if c.get('down'):
				return None, None, True
			gen = c.get('generation')
			if gen != self.generation:
				self.generation = gen
				self.position = 0
			script = c.get('script') or []
			if not isinstance(script, list):
				script = []
			paths = c.get('paths')
			if isinstance(paths, dict) and record.get('path') in paths:
				index = None
				beh = paths[record['path']]
			elif self.position < len(script):
				index = self.position
				beh = script[index]
				self.position += 1
			else:
				index = None
				beh = c.get('default')
			if not isinstance(beh, dict):
				beh = {'status': 204}
			seq = self.next_seq
			self.next_seq += 1
			self.save_state()
			record.update(seq=seq, script_index=index, generation=gen,
						  behaviour=beh)
			self.inflight[seq] = record
			return seq, beh, False

	def finish_request(self, record):
		"""Write the record of a request to requests.jsonl."""
		with self.lock:
			if self.inflight.pop(record['seq'], None) is None:
				return			# written as aborted already
			if self.closing:
				return
			self._append(self.requests_path, record)

	def abort_inflight(self):
		"""On shutdown: write the records of the requests still in flight."""
		with self.lock:
			self.closing = True
			for seq in sorted(self.inflight):
				rec = self.inflight[seq]
				rec['action'] = 'aborted'
				rec['t_answered'] = time.time()
				self._append(self.requests_path, rec)
			self.inflight.clear()

	def refused(self, peer, conn_id):
		with self.lock:
			self._append(self.refused_path, {
				't': time.time(), 'client_port': peer[1],
				'connection': conn_id})

	@staticmethod
	def _append(path, obj):
		line = (json.dumps(obj, sort_keys=True) + '\n').encode()
		fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
		try:
			os.write(fd, line)
		finally:
			os.close(fd)

	# -- content decoding --------------------------------------------------

	def decode(self, data, encoding):
		if not encoding:
			return data
		codings = [e.strip().lower() for e in encoding.split(',') if e.strip()]
		for coding in reversed(codings):
			if coding in ('identity', ''):
				continue
			elif coding in ('gzip', 'x-gzip'):
				data = gzip.decompress(data)
			elif coding == 'deflate':
				try:
					data = zlib.decompress(data)
				except zlib.error:
					data = zlib.decompress(data, -zlib.MAX_WBITS)
			elif coding == 'zstd':
				data = self.unzstd(data)
			else:
				raise ValueError('unsupported Content-Encoding "%s"' % coding)
		return data

	def unzstd(self, data):
		if not self.zstd_cli:
			import io
			dctx = zstandard.ZstdDecompressor()
			with dctx.stream_reader(io.BytesIO(data),
									read_across_frames=True) as r:
				return r.read()
		p = subprocess.run(['zstd', '-d', '-c', '-q'], input=data,
						   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
		if p.returncode != 0:
			raise ValueError('zstd -d failed: %s' %
							 p.stderr.decode(errors='replace').strip())
		return p.stdout


STATE = None


class Handler(http.server.BaseHTTPRequestHandler):
	protocol_version = 'HTTP/1.1'
	server_version = 'walship-http-sink/1'

	def version_string(self):
		return self.server_version

	def log_message(self, fmt, *args):
		log('%s %s' % (self.client_address[1], fmt % args))

	def setup(self):
		super().setup()
		self.conn_id = STATE.next_conn_id()
		self.conn_requests = 0

	def abort_connection(self, reset):
		"""Close without an answer: RST if reset, else FIN."""
		self.close_connection = True
		try:
			if reset:
				self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
										   struct.pack('ii', 1, 0))
			else:
				self.connection.shutdown(socket.SHUT_RDWR)
		except OSError:
			pass
		try:
			self.wfile.flush()
		except OSError:
			pass
		self.connection.close()

	def handle(self):
		if STATE.is_down():
			STATE.refused(self.client_address, self.conn_id)
			self.abort_connection(True)
			return
		try:
			super().handle()
		except (ConnectionError, socket.timeout, OSError) as e:
			log('connection %d: %s' % (self.conn_id, e))

	def finish(self):
		try:
			super().finish()
		except OSError:
			pass

	def do_GET(self):
		body = b'walship http sink\n'
		self.send_response(200)
		self.send_header('Content-Type', 'text/plain')
		self.send_header('Content-Length', str(len(body)))
		self.end_headers()
		if self.command != 'HEAD':
			self.wfile.write(body)

	do_HEAD = do_GET

	def read_body(self):
		te = (self.headers.get('Transfer-Encoding') or '').lower()
		if 'chunked' in te:
			parts = []
			while True:
				line = self.rfile.readline(65537)
				if not line:
					raise ConnectionError('connection closed in chunked body')
				size = int(line.split(b';', 1)[0].strip(), 16)
				if size == 0:
					# trailers up to the empty line
					while True:
						t = self.rfile.readline(65537)
						if t in (b'\r\n', b'\n', b''):
							break
					break
				chunk = self.rfile.read(size)
				if len(chunk) != size:
					raise ConnectionError('connection closed in chunked body')
				parts.append(chunk)
				self.rfile.readline(65537)		# CRLF after the chunk
			return b''.join(parts)
		length = int(self.headers.get('Content-Length') or 0)
		data = self.rfile.read(length) if length > 0 else b''
		if len(data) != length:
			raise ConnectionError('connection closed after %d of %d body bytes'
								  % (len(data), length))
		return data

	def do_POST(self):
		self.conn_requests += 1
		h = self.headers
		auth = h.get('Authorization')
		record = {
			'seq': None,
			't_received': time.time(),
			't_answered': None,
			'method': self.command,
			'path': self.path,
			'content_type': h.get('Content-Type'),
			'content_encoding': h.get('Content-Encoding'),
			'batch_id': h.get('Walship-Batch-Id'),
			'user_agent': h.get('User-Agent'),
			'auth_present': auth is not None,
			'auth_sha256': (hashlib.sha256(auth.encode('latin-1')).hexdigest()
							if auth is not None else None),
			'headers': {k.lower(): v for k, v in h.items()
						if k.lower() not in SECRET_HEADERS},
			'connection': self.conn_id,
			'conn_request': self.conn_requests,
			'client_port': self.client_address[1],
			'script_index': None,
			'generation': None,
			'behaviour': None,
			'action': None,
			'status': None,
			'wire_len': None,
			'body_len': None,
			'body_file': None,
			'error': None,
		}
		seq, beh, down = STATE.begin_request(record)
		if down:
			STATE.refused(self.client_address, self.conn_id)
			self.abort_connection(True)
			return
		try:
			self.serve_request(record, seq, beh)
		finally:
			if record['t_answered'] is None:
				record['t_answered'] = time.time()
			STATE.finish_request(record)

	do_PUT = do_POST

	def serve_request(self, record, seq, beh):
		closing = bool(beh.get('drop') or beh.get('reset'))
		delay = float(beh.get('delay_ms') or 0) / 1000.0

		if closing and beh.get('before_body'):
			if delay > 0:
				time.sleep(delay)
			record['action'] = 'reset' if beh.get('reset') else 'drop'
			record['t_answered'] = time.time()
			STATE.finish_request(record)
			self.abort_connection(bool(beh.get('reset')))
			return

		try:
			raw = self.read_body()
		except (ConnectionError, ValueError, OSError) as e:
			record['action'] = 'bad_request'
			record['error'] = 'reading the body: %s' % e
			self.close_connection = True
			return
		record['wire_len'] = len(raw)
		try:
			body = STATE.decode(raw, self.headers.get('Content-Encoding'))
		except Exception as e:		# noqa: any decoder error
			name = 'bodies/%d.raw' % seq
			with open(os.path.join(STATE.dir, name), 'wb') as f:
				f.write(raw)
			record['error'] = 'decoding the body: %s' % e
			record['body_file'] = None
			record['action'] = 'respond'
			self.answer(record, {'status': 400,
								 'body': 'cannot decode body: %s\n' % e})
			return
		name = 'bodies/%d.bin' % seq
		path = os.path.join(STATE.dir, name)
		with open(path + '.tmp', 'wb') as f:
			f.write(body)
		os.replace(path + '.tmp', path)
		record['body_len'] = len(body)
		record['body_file'] = name

		if delay > 0:
			time.sleep(delay)

		if closing:
			record['action'] = 'reset' if beh.get('reset') else 'drop'
			record['t_answered'] = time.time()
			STATE.finish_request(record)
			self.abort_connection(bool(beh.get('reset')))
			return
		record['action'] = 'respond'
		self.answer(record, beh)

	def answer(self, record, beh):
		"""Send the answer; the record is written just before it is sent."""
		status = int(beh.get('status', 204))
		body = beh.get('body')
		if body is None or status in (204, 304) or 100 <= status < 200:
			payload = b''
		else:
			payload = body.encode() if isinstance(body, str) else \
				json.dumps(body).encode()
		try:
			reason = http.HTTPStatus(status).phrase
		except ValueError:
			reason = 'Status %d' % status
		lines = ['HTTP/1.1 %d %s' % (status, reason),
				 'Server: %s' % self.version_string(),
				 'Date: %s' % self.date_time_string()]
		if payload:
			lines.append('Content-Type: %s' %
						 beh.get('content_type', 'text/plain; charset=utf-8'))
		if status not in (204, 304):
			lines.append('Content-Length: %d' % len(payload))
		if beh.get('retry_after') is not None:
			lines.append('Retry-After: %s' % beh['retry_after'])
		for k, v in (beh.get('headers') or {}).items():
			lines.append('%s: %s' % (k, v))
		if beh.get('close'):
			lines.append('Connection: close')
			self.close_connection = True
		data = ('\r\n'.join(lines) + '\r\n\r\n').encode('latin-1') + payload
		record['status'] = status
		record['t_answered'] = time.time()
		# Written before the answer goes out, so that a client that has
		# seen the answer always finds the record.
		STATE.finish_request(record)
		self.log_request(status)
		self.wfile.write(data)
		self.wfile.flush()


class Server(http.server.ThreadingHTTPServer):
	allow_reuse_address = True		# SO_REUSEADDR: rebind after a restart
	daemon_threads = True
	request_queue_size = 128


def main():
	global STATE
	ap = argparse.ArgumentParser(description='walship test HTTP sink')
	ap.add_argument('--dir', required=True, help='state directory')
	ap.add_argument('--port-file', required=True)
	ap.add_argument('--host', default='127.0.0.1')
	ap.add_argument('--port', type=int, default=0)
	ap.add_argument('--watch-pid', type=int, default=0,
					help='exit when this process is gone')
	ap.add_argument('--zstd-cli', action='store_true',
					help='decode zstd with the zstd CLI even if the '
					'zstandard module is there')
	ap.add_argument('--bind-timeout', type=float, default=10.0,
					help='seconds to keep retrying a busy --port')
	args = ap.parse_args()

	STATE = SinkState(args.dir, args.zstd_cli)

	deadline = time.time() + args.bind_timeout
	while True:
		try:
			server = Server((args.host, args.port), Handler)
			break
		except OSError as e:
			if args.port == 0 or time.time() > deadline:
				log('cannot listen on %s:%d: %s' % (args.host, args.port, e))
				sys.exit(2)
			time.sleep(0.1)

	port = server.server_address[1]
	write_atomic(args.port_file, '%d\n' % port)
	log('listening on %s:%d, state in %s, zstd via %s' %
		(args.host, port, args.dir, 'CLI' if STATE.zstd_cli else 'module'))

	stop = threading.Event()

	def on_signal(signum, frame):
		stop.set()

	signal.signal(signal.SIGTERM, on_signal)
	signal.signal(signal.SIGINT, on_signal)

	t = threading.Thread(target=server.serve_forever,
						 kwargs={'poll_interval': 0.1}, daemon=True)
	t.start()
	while not stop.wait(0.2):
		if args.watch_pid:
			try:
				os.kill(args.watch_pid, 0)
			except ProcessLookupError:
				log('process %d is gone, exiting' % args.watch_pid)
				break
			except PermissionError:
				pass
	server.shutdown()
	server.server_close()
	STATE.abort_inflight()
	log('stopped')
	sys.stdout.flush()
	sys.stderr.flush()
	os._exit(0)


if __name__ == '__main__':
	main()
