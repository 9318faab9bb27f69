#!/usr/bin/env node
// A Maelstrom echo node in JavaScript for Node.js, shaped like the JavaScript nodes people
// write for Maelstrom: `readline` over stdin, one JSON message per line, a handler per body
// type, replies written with console.log, diagnostics with console.error (stderr).
//
// splitbrain's tests run it unchanged as `node echo.js` under the Maelstrom host.
'use strict';

const readline = require('readline');

let nodeId = null;
let nextMsgId = 0;

function send(dest, body) {
  nextMsgId += 1;
  console.log(JSON.stringify({ src: nodeId, dest, body: { msg_id: nextMsgId, ...body } }));
}

function reply(request, body) {
  send(request.src, { ...body, in_reply_to: request.body.msg_id });
}

const handlers = {
  init(request) {
    nodeId = request.body.node_id;
    console.error(`echo.js: ${nodeId} up, cluster ${request.body.node_ids.join(',')}`);
    reply(request, { type: 'init_ok' });
  },
  echo(request) {
    console.error(`echo.js: ${nodeId} echoes ${JSON.stringify(request.body.echo)}`);
    reply(request, { type: 'echo_ok', echo: request.body.echo });
  },
};

const lines = readline.createInterface({ input: process.stdin, terminal: false });
lines.on('line', (line) => {
  let request;
  try {
    request = JSON.parse(line);
  } catch (e) {
    console.error(`echo.js: ignoring a line that is not JSON: ${line}`);
    return;
  }
  const handler = handlers[request.body.type];
  if (handler) {
    handler(request);
  } else {
    reply(request, { type: 'error', code: 10, text: `unsupported: ${request.body.type}` });
  }
});
