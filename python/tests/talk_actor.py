"""One "terminal" of the talk: an interactive Python session driven by the
test through a pipe.

Reads JSON lines {"inputs": [source, ...]} on stdin. Each source is one
input typed at the ">>>" prompt (a statement, possibly compound); it is run
as the interactive interpreter runs it (compiled in 'single' mode, so the
values of expression statements are echoed). Writes back one JSON line
{"out": <everything printed>, "exc": null or {...}}. As at a real prompt,
an exception is printed (its last traceback line) and the session goes on,
but the remaining inputs of that request are not run.
"""

import contextlib
import io
import json
import sys
import traceback


def main():
    channel = sys.stdout
    namespace = {'__name__': '__console__'}
    for line in sys.stdin:
        request = json.loads(line)
        out = io.StringIO()
        exc = None
        with contextlib.redirect_stdout(out):
            for source in request['inputs']:
                try:
                    code = compile(source, '<stdin>', 'single')
                    exec(code, namespace)
                except Exception as e:
                    text = ''.join(traceback.format_exception_only(type(e), e))
                    print(text, end='')
                    exc = {'type': type(e).__name__,
                           'errno': getattr(e, 'errno', None),
                           'text': text,
                           'traceback': traceback.format_exc()}
                    break
        channel.write(json.dumps({'out': out.getvalue(), 'exc': exc}) + '\n')
        channel.flush()


if __name__ == '__main__':
    main()
