// Produces messages to a pulsartest broker with pulsar-flex, an
// independent pure-JS implementation of the Pulsar binary protocol.
// Usage: [PULSAR_FLEX_JWT=TOKEN] node produce.js HOST:PORT TOPIC COUNT
// (the token, if set, goes in CONNECT as auth method "token").
// Sends COUNT/2 messages one by one, the rest as one batch, with payloads
// "flex-<i>", then closes the producer and exits 0 (non-zero on error).
const { Producer, logLevel } = require('pulsar-flex');

const [addr, topic, countArg] = process.argv.slice(2);
const count = parseInt(countArg, 10);

const main = async () => {
  const producer = new Producer({
    topic,
    discoveryServers: [addr],
    jwt: process.env.PULSAR_FLEX_JWT || undefined,
    producerAccessMode: Producer.ACCESS_MODES.SHARED,
    logLevel: logLevel.ERROR,
  });
  await producer.create();
  const half = Math.floor(count / 2);
  for (let i = 0; i < half; i++) {
    await producer.sendMessage({ payload: `flex-${i}`, properties: { source: 'pulsar-flex' } });
  }
  const batch = [];
  for (let i = half; i < count; i++) {
    batch.push({ payload: `flex-${i}`, properties: { source: 'pulsar-flex' } });
  }
  if (batch.length > 0) {
    await producer.sendBatch({ messages: batch });
  }
  await producer.close();
};

const timer = setTimeout(() => {
  console.error('timed out');
  process.exit(2);
}, 20000);

main()
  .then(() => {
    clearTimeout(timer);
    process.exit(0);
  })
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
