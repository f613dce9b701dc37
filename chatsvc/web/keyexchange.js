// Key exchange with one person, as an explicit state machine (docs/trust.md,
// Key exchange): the twin of chatsvc/client/keyexchange.py, a transition
// table with the same states, events and outputs. Both pass every state by
// every event in docs/vectors/keyexchange.json. No I/O: outputs call the
// effects the session provides (send a request, arm a timer on its clock,
// encrypt and send what was held).
//
// A private message goes out keyed to both identities and both sessions,
// or not at all until the user says so (/unsafe): never weaker by itself.

export const RETRY_DELAYS = [5, 10, 20];

const ASKING = { send: ["asking", ["hold"]], answer: ["ready", ["remember", "disarm", "flush"]],
                 retry: ["asking", []], force: ["idle", ["disarm", "flushWeaker"]], gone: ["idle", ["disarm", "dropHeld"]] };

/** state -> event -> [next state, outputs] */
export const TABLE = {
  idle: { send: ["asking_1", ["hold", "request", "arm1"]], answer: ["ready", ["remember"]], timeout: ["idle", []],
          retry: ["idle", []], force: ["idle", []], gone: ["idle", []] },
  asking_1: { ...ASKING, timeout: ["asking_2", ["request", "arm2"]] },
  asking_2: { ...ASKING, timeout: ["asking_3", ["request", "arm3"]] },
  asking_3: { ...ASKING, timeout: ["unanswered", ["tellUnanswered"]] },
  unanswered: { send: ["asking_1", ["hold", "request", "arm1"]], answer: ["ready", ["remember", "flush"]],
                timeout: ["unanswered", []], retry: ["asking_1", ["request", "arm1"]], force: ["idle", ["flushWeaker"]],
                gone: ["idle", ["dropHeld"]] },
  ready: { send: ["ready", ["deliver"]], answer: ["ready", ["remember", "flush"]], timeout: ["ready", []],
           retry: ["asking_1", ["request", "arm1"]], force: ["ready", []], gone: ["idle", ["dropHeld"]] },
};

/**
 * The key exchange with one peer. effects: {request(), arm(seconds), disarm(),
 * deliver(message, session), tellUnanswered(count), deliverWeaker(message), dropped(messages)};
 * any of them may return a promise, which step() awaits in order.
 */
export class PeerKeys {
  constructor(effects) {
    this.effects = effects;
    this.state = "idle";
    this.held = [];
    this.session = null; // their session's X25519 key, from their last request or answer
  }

  send(message) { return this.step("send", { message }); }
  answer(session) { return this.step("answer", { session }); }
  timeout() { return this.step("timeout"); }
  retry() { return this.step("retry"); }
  force() { return this.step("force"); }
  gone() { return this.step("gone"); }

  async step(event, data = {}) {
    const row = TABLE[this.state][event];
    const next = row[0] === "asking" ? this.state : row[0];
    this.state = next;
    for (const output of row[1]) await this.output(output, data);
  }

  async output(name, { message, session }) {
    const e = this.effects;
    switch (name) {
      case "hold": this.held.push(message); break;
      case "request": await e.request(); break;
      case "arm1": case "arm2": case "arm3": await e.arm(RETRY_DELAYS[Number(name.at(-1)) - 1]); break;
      case "disarm": await e.disarm(); break;
      case "remember": this.session = session; break;
      case "deliver": await e.deliver(message, this.session); break;
      case "tellUnanswered": await e.tellUnanswered(this.held.length); break;
      case "flush": case "flushWeaker": {
        const held = this.held;
        this.held = [];
        for (const m of held) await (name === "flush" ? e.deliver(m, this.session) : e.deliverWeaker(m));
        break;
      }
      case "dropHeld": {
        const held = this.held;
        this.held = [];
        this.session = null;
        if (held.length) await e.dropped(held);
        break;
      }
      default: throw new Error(`unknown output ${name}`);
    }
  }
}
