// The web client in a real browser: Debian's chromium, driven headless by
// playwright-core, against a `parley` started for the test. Two browser users
// (alice, bob) and a third user (carol) on Mosquitto's command-line clients
// chat directly and in a group. Every step waits for what it expects; no step
// sleeps.
//
// Environment: WEB_TEST_BROKER (the parley binary; default: ../target/debug/parley, or
// $CARGO_TARGET_DIR/debug/parley), CHROMIUM (default /usr/bin/chromium),
// SCREENSHOT_DIR (a directory to save the screenshots in; default
// test-results/).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, mkdir, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import {
  ConversationEventKind,
  ErrorCode,
  PresenceState,
  ReceiptKind,
  create,
  decodeEnvelope,
  encodeEnvelope,
  ChatMessageSchema,
  ReceiptSchema,
  RequestSchema,
  TypingSchema,
  type Envelope,
} from "../src/proto.js";

// This file runs bundled, from web/build/test/.
const WEB_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const REPO = resolve(WEB_DIR, "..");
const PARLEY_BIN =
  process.env.WEB_TEST_BROKER ?? join(process.env.CARGO_TARGET_DIR ?? join(REPO, "target"), "debug", "parley");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SHOTS = process.env.SCREENSHOT_DIR ?? join(WEB_DIR, "test-results");
const STEP_MS = 20_000;

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => ok(port));
    });
    server.on("error", fail);
  });
}

/** A parley node on free loopback ports with its own data directory. */
class Node {
  private constructor(
    readonly process: ChildProcess,
    readonly dir: string,
    readonly mqtt: number,
    readonly http: number,
  ) {}

  static async start(): Promise<Node> {
    const dir = await mkdtemp(join(tmpdir(), "parley-web-test-"));
    const [mqtt, ws, http] = [await freePort(), await freePort(), await freePort()];
    const child = spawn(
      PARLEY_BIN,
      ["--data-dir", dir, "--mqtt-tcp", `127.0.0.1:${mqtt}`, "--mqtt-ws", `127.0.0.1:${ws}`, "--http", `127.0.0.1:${http}`],
      {
        stdio: ["ignore", "inherit", "inherit"],
        env: {
          // parley reads every PARLEY_* variable as configuration: pass none
          // of the environment's (.ci/test exports PARLEY_TEST_* for others).
          ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PARLEY_"))),
          PARLEY_HTTP__WEB_DIR: join(WEB_DIR, "dist"),
          // The scroll-back step sends 60 messages as fast as the page can;
          // on a loaded machine the broker may take them in one burst, past
          // the default burst of 50 (rate limits have their own tests).
          PARLEY_CHAT__MESSAGE_BURST: "1000",
          PARLEY_LOG: process.env.PARLEY_LOG ?? "warn",
        },
      },
    );
    const node = new Node(child, dir, mqtt, http);
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`parley exited with ${child.exitCode}`);
      try {
        if ((await fetch(`${node.base}/healthz`)).ok) return node;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error("parley did not become healthy");
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  get base(): string {
    return `http://127.0.0.1:${this.http}`;
  }

  async stop(): Promise<void> {
    this.process.kill("SIGTERM");
    if (this.process.exitCode === null) await new Promise((r) => this.process.once("exit", r));
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Waits until `check` holds for something in `items`, as items arrive. */
class Inbox<T> {
  readonly items: T[] = [];
  private waiters: { check: (t: T) => boolean; ok: (t: T) => void }[] = [];

  push(item: T): void {
    this.items.push(item);
    this.waiters = this.waiters.filter((w) => {
      if (!w.check(item)) return true;
      w.ok(item);
      return false;
    });
  }

  wait(what: string, check: (t: T) => boolean): Promise<T> {
    const found = this.items.find(check);
    if (found) return Promise.resolve(found);
    return new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`timed out waiting for ${what}`)), STEP_MS);
      this.waiters.push({
        check,
        ok: (t) => {
          clearTimeout(timer);
          ok(t);
        },
      });
    });
  }
}

/** A user on Mosquitto's command-line clients: mosquitto_sub prints each payload in hex, mosquitto_pub sends them. */
class MosquittoUser {
  readonly inbox = new Inbox<{ topic: string; envelope: Envelope }>();
  private subs: ChildProcess[] = [];
  private nextRequest = 1;

  constructor(
    readonly user: string,
    readonly password: string,
    private readonly port: number,
  ) {}

  private auth(): string[] {
    return ["-h", "127.0.0.1", "-p", String(this.port), "-u", this.user, "-P", this.password, "-V", "mqttv5"];
  }

  /** Subscribes (in a mosquitto_sub of its own) and resolves once it receives. */
  subscribe(clientId: string, topics: string[]): Promise<void> {
    const args = [...this.auth(), "-i", clientId, "-q", "1", "-F", "%t %x"];
    for (const t of topics) args.push("-t", t);
    const sub = spawn("mosquitto_sub", args, { stdio: ["ignore", "pipe", "inherit"] });
    this.subs.push(sub);
    createInterface({ input: sub.stdout! }).on("line", (line) => {
      const [topic, hex] = line.split(" ");
      if (!hex) return;
      this.inbox.push({ topic, envelope: decodeEnvelope(Buffer.from(hex, "hex")) });
    });
    return new Promise((ok, fail) => {
      sub.once("spawn", () => ok());
      sub.once("error", fail);
    });
  }

  async publish(topic: string, payload: Uint8Array): Promise<void> {
    const pub = spawn("mosquitto_pub", [...this.auth(), "-i", `${this.user}-pub`, "-q", "1", "-t", topic, "-s"], {
      stdio: ["pipe", "inherit", "inherit"],
    });
    pub.stdin!.end(Buffer.from(payload));
    const code = await new Promise((r) => pub.once("exit", r));
    assert.equal(code, 0, `mosquitto_pub to ${topic}`);
  }

  send(conversationId: string, text: string): Promise<void> {
    const message = create(ChatMessageSchema, { clientMessageId: `m-${Date.now()}-${Math.random()}`, body: { case: "text", value: { text } as never } });
    return this.publish(`s/${conversationId}`, encodeEnvelope({ case: "message", value: message }));
  }

  async request(op: ReturnType<typeof create<typeof RequestSchema>>["op"]) {
    const requestId = `carol-${this.nextRequest++}`;
    await this.publish(`q/${this.user}`, encodeEnvelope({ case: "request", value: create(RequestSchema, { requestId, op }) }));
    const got = await this.inbox.wait(`response ${requestId}`, (m) => m.envelope.kind.case === "response" && m.envelope.kind.value.requestId === requestId);
    return got.envelope.kind.value as Extract<Envelope["kind"], { case: "response" }>["value"];
  }

  /** A chat message on the inbox that satisfies `check`. */
  async message(what: string, check: (m: Extract<Envelope["kind"], { case: "message" }>["value"]) => boolean) {
    const got = await this.inbox.wait(what, (m) => m.envelope.kind.case === "message" && check(m.envelope.kind.value));
    return got.envelope.kind.value as Extract<Envelope["kind"], { case: "message" }>["value"];
  }

  stop(): void {
    for (const s of this.subs) s.kill();
  }
}

const text = (m: { body: { case?: string; value?: unknown } }) => (m.body.case === "text" ? (m.body.value as { text: string }).text : "");

async function signUpInBrowser(page: Page, base: string, user: string): Promise<void> {
  await page.goto(base + "/");
  await page.fill("#username", user);
  await page.fill("#password", `${user}-secret`);
  await page.click("#signup");
  await page.locator("#me", { hasText: user }).waitFor();
  await page.locator('#connection[data-state="online"]').waitFor({ state: "attached" });
}

/** The texts of the open conversation's messages, in the order shown. */
function shownTexts(page: Page): Promise<string[]> {
  return page.locator("#messages .entry:not(.event) .text").allTextContents();
}

async function waitForTexts(page: Page, expected: string[]): Promise<void> {
  await page.waitForFunction(
    (want) => {
      const got = [...document.querySelectorAll("#messages .entry:not(.event) .text")].map((e) => e.textContent);
      return JSON.stringify(got.slice(-want.length)) === JSON.stringify(want);
    },
    expected,
    { timeout: STEP_MS },
  );
}

async function openConversation(page: Page, title: string): Promise<void> {
  await page.locator(`#conversations .conv[data-title="${title}"]`).click();
  await page.locator("#chat-title", { hasText: title }).waitFor();
}

async function sendText(page: Page, text: string): Promise<void> {
  await page.fill("#composer", text);
  await page.click("#send");
}

test("two browser users and a Mosquitto user chat directly and in a group", { timeout: 300_000 }, async (t) => {
  await mkdir(SHOTS, { recursive: true });
  const node = await Node.start();
  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const carol = new MosquittoUser("carol", "carol-secret", node.mqtt);
  t.after(async () => {
    carol.stop();
    await browser.close();
    await node.stop();
  });
  const signUp = await fetch(`${node.base}/v1/users`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: "carol", password: "carol-secret" }),
  });
  assert.equal(signUp.status, 201);
  await carol.subscribe("carol-inbox", ["u/carol/i", "u/carol/t", "a/carol"]);

  // alice on a laptop-sized window, bob on a phone-sized one.
  const aliceContext: BrowserContext = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  const bobContext: BrowserContext = await browser.newContext({ viewport: { width: 390, height: 760 }, isMobile: true, hasTouch: true });
  const alice = await aliceContext.newPage();
  const bob = await bobContext.newPage();
  for (const [name, page] of [["alice", alice], ["bob", bob]] as const) {
    page.on("pageerror", (e) => console.error(`[${name}] page error: ${e.stack}`));
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") console.error(`[${name}] ${m.text()}`);
    });
  }

  await t.test("sign up and log in", async () => {
    await alice.goto(node.base + "/");
    await alice.locator("#login-form").waitFor();
    await alice.screenshot({ path: join(SHOTS, "login.png") });
    await signUpInBrowser(alice, node.base, "alice");
    await signUpInBrowser(bob, node.base, "bob");
  });

  await t.test("direct chat: messages, receipts, typing, edits, replies, presence", async () => {
    await alice.fill("#peer", "bob");
    await alice.click("#new-direct button");
    await alice.locator("#chat-title", { hasText: "bob" }).waitFor();
    await sendText(alice, "hello bob");
    // stored: sent, or delivered already if bob's device was quick
    await alice.locator('#messages .entry.mine[data-seq="1"] .tick:is([data-tick="sent"], [data-tick="delivered"])').waitFor();
    // bob sees it in his list as unread, opens it: alice's tick turns read.
    await bob.locator('#conversations .conv[data-title="alice"] .unread[data-unread="1"]').waitFor();
    await openConversation(bob, "alice");
    await waitForTexts(bob, ["hello bob"]);
    // A first message from a stranger is a message request: bob accepts it.
    await bob.locator("#request", { hasText: "alice wants to chat with you." }).waitFor();
    await bob.screenshot({ path: join(SHOTS, "phone-request.png") });
    await bob.click("#accept");
    await bob.locator("#request").waitFor({ state: "hidden" });
    await alice.locator('#messages .entry[data-seq="1"] .tick[data-tick="read"]').waitFor();
    await bob.locator("#conversations .conv .unread").waitFor({ state: "detached" });
    // presence: each sees the other online.
    await alice.locator("#chat-status", { hasText: "online" }).waitFor();
    await bob.locator("#chat-status", { hasText: "online" }).waitFor();
    // typing, then a reply.
    await bob.fill("#composer", "hi ali");
    await bob.locator("#composer").press("e");
    await alice.locator("#chat-status", { hasText: "bob is typing" }).waitFor();
    await bob.locator('#messages .entry[data-seq="1"]').click();
    await bob.click("#action-reply");
    await bob.click("#send");
    await waitForTexts(alice, ["hello bob", "hi alie"]);
    await alice.locator('#messages .entry[data-seq="2"] .reply-quote', { hasText: "hello bob" }).waitFor();
    await alice.locator("#chat-status", { hasText: "online" }).waitFor();
    // bob fixes his typo with an edit; alice sees the new text, marked edited.
    await bob.locator('#messages .entry[data-seq="2"]').click();
    await bob.click("#action-edit");
    await bob.fill("#composer", "hi alice");
    await bob.click("#send");
    await alice.locator('#messages .entry[data-seq="2"] .edited').waitFor();
    assert.deepEqual(await shownTexts(alice), ["hello bob", "hi alice"]);
    await bob.locator('#messages .entry[data-seq="2"] .tick[data-tick="read"]').waitFor();
    await alice.screenshot({ path: join(SHOTS, "direct-chat.png") });
  });

  let group = "";
  await t.test("group with a Mosquitto user: events, messages, receipts, typing, presence", async () => {
    await alice.click("#new-group-box summary");
    await alice.fill("#group-name", "team");
    await alice.fill("#group-members", "bob, carol");
    await alice.click("#create-group");
    await alice.locator("#chat-title", { hasText: "team" }).waitFor();
    await alice.locator("#messages .entry.event", { hasText: "You created the group “team” with bob, carol." }).waitFor();
    // carol learns of it from the event on her inbox.
    const created = await carol.message("the group's creation", (m) => m.body.case === "event" && m.body.value.kind === ConversationEventKind.CREATED);
    group = created.conversationId;
    assert.equal(created.sender, "alice");
    assert.equal(created.seq, 1n);
    // bob on his phone: back to the list, where the group is.
    await bob.click("#back");
    await openConversation(bob, "team");
    await bob.locator("#messages .entry.event", { hasText: "alice created the group “team” with you, carol." }).waitFor();

    // carol -> browsers
    await carol.send(group, "hi from carol");
    await waitForTexts(alice, ["hi from carol"]);
    await waitForTexts(bob, ["hi from carol"]);
    // browsers -> carol, and carol's read receipt turns alice's tick read once bob has read too.
    await sendText(alice, "welcome carol");
    const welcome = await carol.message("alice's welcome", (m) => text(m) === "welcome carol");
    assert.equal(welcome.sender, "alice");
    await carol.inbox.wait("bob's read receipt", (m) => {
      const k = m.envelope.kind;
      return k.case === "receipt" && k.value.user === "bob" && k.value.kind === ReceiptKind.READ && k.value.upToSeq >= welcome.seq;
    });
    // a group message is delivered (read) once every other member has it
    await alice.locator(`#messages .entry[data-seq="${welcome.seq}"] .tick[data-tick="sent"]`).waitFor();
    await carol.publish(`r/${group}`, encodeEnvelope({ case: "receipt", value: create(ReceiptSchema, { kind: ReceiptKind.DELIVERED, upToSeq: welcome.seq }) }));
    await alice.locator(`#messages .entry[data-seq="${welcome.seq}"] .tick[data-tick="delivered"]`).waitFor();
    await carol.publish(`r/${group}`, encodeEnvelope({ case: "receipt", value: create(ReceiptSchema, { kind: ReceiptKind.READ, upToSeq: welcome.seq }) }));
    await alice.locator(`#messages .entry[data-seq="${welcome.seq}"] .tick[data-tick="read"]`).waitFor();
    // typing both ways
    await carol.publish(`t/${group}`, encodeEnvelope({ case: "typing", value: create(TypingSchema, { active: true }) }));
    await bob.locator("#chat-status", { hasText: "carol is typing" }).waitFor();
    await alice.fill("#composer", "typing…");
    await alice.locator("#composer").press("a");
    await carol.inbox.wait("alice typing", (m) => m.envelope.kind.case === "typing" && m.envelope.kind.value.user === "alice" && m.envelope.kind.value.active);
    await alice.fill("#composer", "");
    // presence both ways: carol sees alice and bob online; the browsers see carol online.
    await carol.subscribe("carol-presence", ["p/alice", "p/bob"]);
    for (const user of ["alice", "bob"]) {
      await carol.inbox.wait(`${user} online`, (m) => m.envelope.kind.case === "presence" && m.envelope.kind.value.user === user && m.envelope.kind.value.state === PresenceState.ONLINE);
    }
    await alice.click("#info-toggle");
    await alice.locator('#members li[data-user="carol"] .dot.online').waitFor();
    await alice.locator('#members li[data-user="bob"] .dot.online').waitFor();
    await alice.screenshot({ path: join(SHOTS, "group-chat.png") });
    await bob.screenshot({ path: join(SHOTS, "phone-group.png") });
  });

  await t.test("offline: bob's messages arrive once, in order, when he is back", async () => {
    await bob.click("#back");
    await bobContext.setOffline(true);
    await bob.locator('#connection[data-state="offline"]').waitFor();
    // alice sees bob go: last seen, in the direct chat
    await openConversation(alice, "bob");
    await alice.locator("#chat-status", { hasText: "last seen" }).waitFor();
    for (const m of ["one", "two", "three"]) await sendText(alice, m);
    await alice.locator('#messages .entry.mine[data-seq="5"] .tick[data-tick="sent"]').waitFor();
    await carol.send(group, "while you were away");
    await carol.message("carol's own copy", (m) => text(m) === "while you were away");
    await bob.screenshot({ path: join(SHOTS, "phone-offline.png") });
    await bobContext.setOffline(false);
    await bob.locator('#connection[data-state="online"]').waitFor({ state: "attached" });
    await bob.locator('#conversations .conv[data-title="alice"] .unread[data-unread="3"]').waitFor();
    await bob.locator('#conversations .conv[data-title="team"] .unread[data-unread="1"]').waitFor();
    await bob.screenshot({ path: join(SHOTS, "phone-list.png") });
    await openConversation(bob, "alice");
    await waitForTexts(bob, ["one", "two", "three"]);
    assert.deepEqual(await shownTexts(bob), ["hello bob", "hi alice", "one", "two", "three"]);
    await bob.click("#back");
    await openConversation(bob, "team");
    await waitForTexts(bob, ["while you were away"]);
    assert.deepEqual(await shownTexts(bob), ["hi from carol", "welcome carol", "while you were away"]);
    await alice.locator("#chat-status", { hasText: "online" }).waitFor();
  });

  await t.test("removed members see the event and can no longer send", async () => {
    await openConversation(alice, "team");
    if (!(await alice.locator("#info").isVisible())) await alice.click("#info-toggle");
    await alice.locator('#members li[data-user="bob"] .remove').click();
    await bob.locator("#messages .entry.event", { hasText: "alice removed you." }).waitFor();
    await bob.locator("#gone", { hasText: "You were removed from this group by alice." }).waitFor();
    assert.equal(await bob.locator("#compose").isVisible(), false);
    await alice.locator("#messages .entry.event", { hasText: "You removed bob." }).waitFor();
    await alice.locator('#members li[data-user="bob"]').waitFor({ state: "detached" });
    await bob.screenshot({ path: join(SHOTS, "phone-removed.png") });
    // carol: removed too; the event is the last entry she gets, and a send is refused.
    await alice.locator('#members li[data-user="carol"] .remove').click();
    const removed = await carol.message("carol's removal", (m) => m.body.case === "event" && m.body.value.kind === ConversationEventKind.MEMBER_REMOVED && m.body.value.users.includes("carol"));
    assert.equal(removed.sender, "alice");
    await carol.send(group, "am I still here?");
    await carol.inbox.wait("NOT_A_MEMBER", (m) => m.envelope.kind.case === "error" && m.envelope.kind.value.code === ErrorCode.NOT_A_MEMBER);
    const after = await carol.request({ case: "fetchMessages", value: { conversationId: group } as never });
    assert.equal(after.result.case, "error");
    // alice's history has every event in its seq place, and sync no longer lists the group for carol.
    const list = await carol.request({ case: "syncConversations", value: {} as never });
    assert.equal(list.result.case, "conversations");
    assert.ok(!(list.result.value as { items: { conversation?: { id: string } }[] }).items.some((i) => i.conversation?.id === group));
    await alice.locator("#messages .entry.event", { hasText: "You removed carol." }).waitFor();
  });

  await t.test("history scrolls back past the newest page", async () => {
    await alice.click("#new-group-box summary");
    await alice.fill("#group-name", "archive");
    await alice.fill("#group-members", "bob");
    await alice.click("#create-group");
    await alice.locator("#chat-title", { hasText: "archive" }).waitFor();
    const texts = Array.from({ length: 60 }, (_, i) => `m${i + 1}`);
    for (const m of texts) await sendText(alice, m);
    // seq 1 is the creation, so the last message is seq 61; stored means
    // sent, or already delivered or read if bob's device was quick.
    await alice
      .locator('#messages .entry[data-seq="61"] .tick:is([data-tick="sent"], [data-tick="delivered"], [data-tick="read"])')
      .waitFor();
    await bob.click("#back");
    await openConversation(bob, "archive");
    await waitForTexts(bob, texts.slice(-50));
    assert.deepEqual(await shownTexts(bob), texts.slice(-50), "the newest page: 50 entries");
    await bob.locator("#messages .older").waitFor();
    await bob.locator("#messages").evaluate((e) => (e.scrollTop = 0));
    await bob.locator("#messages .entry.event", { hasText: "alice created the group “archive” with you." }).waitFor();
    assert.deepEqual(await shownTexts(bob), texts);
    assert.equal(await bob.locator("#messages .older").count(), 0);
  });
});
