// Consumes from a pulsartest broker with pulsar-flex, an independent
// pure-JS implementation of the Pulsar binary protocol, and acknowledges
// only when told to.
// Usage: node consume.js HOST:PORT TOPIC SUBSCRIPTION
// Subscribes Shared (pulsar-flex subscribes at the latest message), prints
// "ready" once it consumes, then answers commands read from stdin, one a
// line:
//   count   prints the number of messages received so far
//   ack N   acknowledges the N oldest messages not yet acknowledged, one by
//           one, each waiting for the broker's ACK_RESPONSE, then prints
//           "acked N"
//   quit    exits 0
// Any error exits non-zero.
const readline = require('readline');
const { Consumer, logLevel } = require('pulsar-flex');

const [addr, topic, subscription] = process.argv.slice(2);

const received = [];
let acked = 0;

const consumer = new Consumer({
  topic,
  subscription,
  discoveryServers: [addr],
  subType: Consumer.SUB_TYPES.SHARED,
  consumerName: 'flex',
  receiveQueueSize: 1000,
  logLevel: logLevel.ERROR,
});

const fail = (err) => {
  console.error(err);
  process.exit(1);
};

const main = async () => {
  await consumer.subscribe();
  await consumer.run({
    autoAck: false,
    onMessage: async ({ ack, message }) => {
      received.push({ ack, payload: message.toString() });
    },
  });
  console.log('ready');
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    const [cmd, arg] = line.trim().split(/\s+/);
    if (cmd === 'count') {
      console.log(String(received.length));
    } else if (cmd === 'ack') {
      const n = parseInt(arg, 10);
      if (!(n >= 0) || acked + n > received.length) {
        fail(new Error(`cannot ack ${arg}: ${received.length - acked} unacknowledged`));
      }
      for (let i = 0; i < n; i++) {
        await received[acked].ack();
        acked++;
      }
      console.log(`acked ${n}`);
    } else if (cmd === 'quit') {
      process.exit(0);
    } else {
      fail(new Error(`unknown command ${line}`));
    }
  }
  process.exit(0);
};

setTimeout(() => fail(new Error('timed out')), 30000).unref();

main().catch(fail);
