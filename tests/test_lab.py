"""JupyterLab, as users work: a headless server starts with the project's kernel and runs a stage notebook through the
server's own REST and websocket kernel API (not nbdev_test's in-process shell)."""
import json, os, signal, socket, subprocess, sys, time, uuid
from pathlib import Path
import pytest
from conftest import REPO

NOTEBOOK = '09_augment.ipynb'  # a whole stage notebook, demos and checks included, that runs in seconds


def free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.fixture(scope='module')
def server():
    port, token = free_port(), uuid.uuid4().hex
    jupyter = Path(sys.executable).parent / 'jupyter'
    proc = subprocess.Popen([str(jupyter), 'lab', '--no-browser', f'--port={port}', '--ip=127.0.0.1',
                             f'--IdentityProvider.token={token}', '--allow-root', f'--notebook-dir={REPO / "nbs"}', '--ServerApp.open_browser=False'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    url = f'http://127.0.0.1:{port}'
    try:
        deadline = time.time() + 60
        while True:
            try:
                if request(url, token, 'GET', '/api/status')['started']: break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f'JupyterLab did not start: {proc.stderr.read()[-2000:] if proc.poll() is not None else "timeout"}')
                time.sleep(0.5)
        yield url, token
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try: proc.wait(20)
        except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL)


def request(url, token, method, path, body=None):
    import urllib.request
    req = urllib.request.Request(url + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={'Authorization': f'token {token}', 'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=30) as r: return json.loads(r.read() or b'{}')


async def execute(ws, code: str, timeout: float = 120) -> dict:
    "Send one execute_request over the kernel websocket; the reply's content plus any error output seen"
    import asyncio
    msg_id = uuid.uuid4().hex
    await ws.write_message(json.dumps({'header': {'msg_id': msg_id, 'msg_type': 'execute_request', 'username': 'test',
                                                  'session': uuid.uuid4().hex, 'version': '5.3'},
                                       'parent_header': {}, 'metadata': {}, 'channel': 'shell',
                                       'content': {'code': code, 'silent': False, 'store_history': True,
                                                   'user_expressions': {}, 'allow_stdin': False}}))
    errors = []
    while True:
        raw = await asyncio.wait_for(ws.read_message(), timeout)
        assert raw is not None, 'websocket closed'
        m = json.loads(raw)
        if m.get('parent_header', {}).get('msg_id') != msg_id: continue
        if m['msg_type'] == 'error': errors.append(m['content']['ename'] + ': ' + m['content']['evalue'])
        if m['msg_type'] == 'execute_reply': return m['content'] | {'errors': errors}


def test_the_server_runs_a_stage_notebook_through_its_kernel_api(server):
    import asyncio
    from tornado.websocket import websocket_connect
    url, token = server
    specs = request(url, token, 'GET', '/api/kernelspecs')
    assert 'python3' in specs['kernelspecs']  # the notebooks' kernelspec
    kernel = request(url, token, 'POST', '/api/kernels', {'name': 'python3'})
    cells = [''.join(c['source']) for c in json.loads((REPO / 'nbs' / NOTEBOOK).read_text())['cells']
             if c['cell_type'] == 'code' and 'nbdev_export' + '(' not in ''.join(c['source'])]

    async def run_all():
        ws = await websocket_connect(f"ws://127.0.0.1:{url.rsplit(':', 1)[1]}/api/kernels/{kernel['id']}/channels?token={token}")
        try:
            exe = await execute(ws, 'import sys; print(sys.executable)')
            assert exe['status'] == 'ok'
            for code in cells:
                reply = await execute(ws, code)
                assert reply['status'] == 'ok' and not reply['errors'], (code[:200], reply)
            return len(cells)
        finally: ws.close()

    assert asyncio.run(run_all()) > 10
