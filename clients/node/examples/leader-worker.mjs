// A fleet of workers where one leads: run this on every node (`node examples/leader-worker.mjs worker-1`).
// The leader consumes the queue while its leadership holds, stops the moment it is lost, and hands over at once
// on SIGTERM (redeploys): the next candidate starts within milliseconds.
import { Warden } from '../index.mjs';

const me = process.argv[2] || `worker-${process.pid}`;
const warden = new Warden({ url: process.env.WARDEN_URL });
const election = warden.election('queue-consumer');

let stopping = false;
let leadership;
process.on('SIGTERM', async () => {
  stopping = true;
  await leadership?.release().catch(() => {});
  process.exit(0);
});

while (!stopping) {
  console.log(`${me}: waiting to lead`);
  leadership = await election.campaign(me, { ttl: 10000 });
  console.log(`${me}: leading (fencing token ${leadership.fencingToken})`);
  while (!leadership.lost && !stopping) {
    // One unit of work, fenced: the store rejects writes with a token lower than one it has seen.
    console.log(`${me}: consumed a message with token ${leadership.fencingToken}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  if (leadership.lost && !stopping) console.log(`${me}: leadership lost; campaigning again`);
}
