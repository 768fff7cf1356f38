// The chat session: one MQTT connection over WebSocket, the user's
// conversations and what is known of them. It speaks Parley's chat topics
// (docs/topics.md) and keeps each open conversation's entries complete and
// in seq order: a live entry after a gap triggers a fetch of what is missing,
// and every (re)connection catches up with a sync.
import mqtt, { type MqttClient } from "mqtt";
import {
  ConversationEventKind,
  ConversationKind,
  Direction,
  ErrorCode,
  MessageAction,
  PresenceState,
  ReceiptKind,
  Role,
  create,
  decodeEnvelope,
  encodeEnvelope,
  ChatMessageSchema,
  ReceiptSchema,
  RequestSchema,
  TypingSchema,
  type ChatMessage,
  type Conversation,
  type ConversationSummary,
  type Request,
  type Response,
} from "./proto.js";

export type Op = Request["op"];

/** A message body as the composer produces it. */
export type Body = ChatMessage["body"];

/** An entry of a conversation, as the client shows it. */
export interface Entry {
  /** 0 while it is being sent. */
  seq: number;
  message: ChatMessage;
  /** The client_message_id of an entry of ours not yet stored. */
  pending?: string;
  /** A send the server refused, with why. */
  failed?: string;
}

export interface ConversationState {
  id: string;
  conversation: Conversation;
  /** Entries by seq (plain messages and events; edits and deletes are applied to their targets). */
  entries: Map<number, Entry>;
  /** Our messages on their way, by client_message_id. */
  pending: Map<string, Entry>;
  /** Lowest seq loaded; every seq from it to `contiguousTo` is loaded. */
  loadedFrom: number;
  contiguousTo: number;
  /** Whether older entries exist before `loadedFrom`. */
  hasOlder: boolean;
  lastSeq: number;
  readUpTo: number;
  deliveredUpTo: number;
  lastMessage?: ChatMessage;
  /** Other members' cursors, as relayed receipts tell them. */
  othersRead: Map<string, number>;
  othersDelivered: Map<string, number>;
  /** Who is typing, and until when (ms). */
  typing: Map<string, number>;
  /** Set when we were removed or left: the conversation is read-only. */
  gone?: string;
  /** A direct conversation we accepted (opened it, wrote in it, or accepted its request). */
  accepted?: boolean;
  loaded: boolean;
}

export interface PresenceInfo {
  online: boolean;
  lastSeenMs: number;
}

type Listener = () => void;

const TYPING_TTL_MS = 6000;

export class ChatSession {
  readonly conversations = new Map<string, ConversationState>();
  readonly presence = new Map<string, PresenceInfo>();
  connected = false;
  /** Set once the first sync after a connection has finished. */
  synced = false;
  private client?: MqttClient;
  private requests = new Map<string, { resolve: (r: Response) => void; reject: (e: Error) => void }>();
  private nextRequest = 1;
  private listeners = new Set<Listener>();
  private presenceSubscribed = new Set<string>();
  private syncing?: Promise<void>;
  private changeScheduled = false;
  /** Conversation on screen (gets read receipts). */
  visible?: string;

  constructor(
    readonly user: string,
    private readonly token: string,
    private readonly url: string,
  ) {}

  onChange(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    if (this.changeScheduled) return;
    this.changeScheduled = true;
    queueMicrotask(() => {
      this.changeScheduled = false;
      for (const l of this.listeners) l();
    });
  }

  /** Connects, and reconnects and catches up after every loss. */
  start(): void {
    const clientId = `web-${crypto.getRandomValues(new Uint32Array(2)).join("")}`.slice(0, 23);
    const client = mqtt.connect(this.url, {
      protocolVersion: 5,
      clientId,
      username: this.user,
      password: this.token,
      clean: true,
      reconnectPeriod: 1000,
      connectTimeout: 5000,
      keepalive: 30,
    });
    this.client = client;
    client.on("connect", () => {
      this.connected = true;
      this.presenceSubscribed.clear();
      client.subscribe(
        {
          [`u/${this.user}/i`]: { qos: 1 },
          [`u/${this.user}/t`]: { qos: 0 },
          [`a/${this.user}`]: { qos: 1 },
        },
        () => {
          void this.sync();
        },
      );
      this.changed();
    });
    client.on("close", () => {
      if (this.connected) {
        this.connected = false;
        this.synced = false;
        this.changed();
      }
    });
    client.on("message", (topic, payload) => this.receive(topic, new Uint8Array(payload)));
    // Phones and laptops lose the network without the socket noticing at
    // once: drop the connection when the browser says it is offline, and
    // reconnect as soon as it is back.
    window.addEventListener("offline", () => client.stream?.destroy());
    window.addEventListener("online", () => {
      if (!client.connected) client.reconnect();
    });
    setInterval(() => this.expireTyping(), 1000);
  }

  stop(): void {
    this.client?.end(true);
  }

  // ---- requests ------------------------------------------------------------

  /** Sends a request on q/{user} and waits for its answer. */
  request(op: Op): Promise<Response> {
    const requestId = `r${this.nextRequest++}`;
    const payload = encodeEnvelope({ case: "request", value: create(RequestSchema, { requestId, op }) });
    return new Promise((resolve, reject) => {
      this.requests.set(requestId, { resolve, reject });
      this.client?.publish(`q/${this.user}`, payload as never, { qos: 1 }, (err) => {
        if (err) {
          this.requests.delete(requestId);
          reject(err);
        }
      });
    });
  }

  /** A request whose answer must not be an error. */
  async call(op: Op): Promise<Response["result"]> {
    const response = await this.request(op);
    if (response.result.case === "error") {
      throw new ChatError(response.result.value.code, response.result.value.message);
    }
    return response.result;
  }

  // ---- catching up ---------------------------------------------------------

  /** Lists every conversation and fetches what open ones missed. */
  sync(): Promise<void> {
    this.syncing ??= this.doSync().finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  private async doSync(): Promise<void> {
    const seen = new Set<string>();
    let pageToken = "";
    do {
      const result = await this.call({ case: "syncConversations", value: { changedSinceMs: 0n, limit: 0, pageToken } as never });
      if (result.case !== "conversations") break;
      for (const item of result.value.items) {
        seen.add(item.conversation!.id);
        this.applySummary(item);
      }
      pageToken = result.value.nextPageToken;
    } while (pageToken);
    for (const [id, state] of this.conversations) {
      if (!seen.has(id) && !state.gone) state.gone = "You are no longer a member of this conversation.";
    }
    for (const state of this.conversations.values()) {
      if (state.loaded && !state.gone && state.lastSeq > state.contiguousTo) await this.fillForward(state);
    }
    this.synced = true;
    this.sendDeliveredReceipts();
    this.changed();
  }

  private applySummary(item: ConversationSummary): void {
    const conversation = item.conversation!;
    const state = this.state(conversation);
    state.conversation = conversation;
    state.lastSeq = Math.max(state.lastSeq, Number(conversation.lastSeq));
    state.readUpTo = Math.max(state.readUpTo, Number(item.readUpToSeq));
    state.deliveredUpTo = Math.max(state.deliveredUpTo, Number(item.deliveredUpToSeq));
    if (item.lastMessage && (!state.lastMessage || item.lastMessage.seq >= state.lastMessage.seq)) {
      state.lastMessage = item.lastMessage;
    }
    state.gone = undefined;
    for (const member of conversation.members) this.watchPresence(member.user);
  }

  private state(conversation: Conversation): ConversationState {
    let state = this.conversations.get(conversation.id);
    if (!state) {
      state = {
        id: conversation.id,
        conversation,
        entries: new Map(),
        pending: new Map(),
        loadedFrom: 0,
        contiguousTo: 0,
        hasOlder: false,
        lastSeq: Number(conversation.lastSeq),
        readUpTo: 0,
        deliveredUpTo: 0,
        othersRead: new Map(),
        othersDelivered: new Map(),
        typing: new Map(),
        loaded: false,
      };
      this.conversations.set(conversation.id, state);
    }
    return state;
  }

  /** Loads the newest page of a conversation, once. */
  async open(id: string): Promise<void> {
    const state = this.conversations.get(id);
    if (!state || state.loaded || state.gone) return;
    const result = await this.call({
      case: "fetchMessages",
      value: { conversationId: id, afterSeq: 0n, beforeSeq: 0n, limit: 50, direction: Direction.BACKWARD } as never,
    });
    if (result.case !== "messages") return;
    const messages = result.value.messages;
    state.loaded = true;
    state.hasOlder = result.value.hasMore;
    state.loadedFrom = messages.length ? Number(messages[0].seq) : state.lastSeq + 1;
    state.contiguousTo = messages.length ? state.loadedFrom - 1 : state.lastSeq;
    for (const m of messages) this.addEntry(state, m);
    if (state.lastSeq > state.contiguousTo) await this.fillForward(state);
    this.changed();
  }

  /** Loads the page before the oldest loaded entry. */
  async loadOlder(id: string): Promise<void> {
    const state = this.conversations.get(id);
    if (!state || !state.loaded || !state.hasOlder || state.gone) return;
    const result = await this.call({
      case: "fetchMessages",
      value: { conversationId: id, afterSeq: 0n, beforeSeq: BigInt(state.loadedFrom), limit: 50, direction: Direction.BACKWARD } as never,
    });
    if (result.case !== "messages") return;
    state.hasOlder = result.value.hasMore;
    const messages = result.value.messages;
    if (messages.length) state.loadedFrom = Number(messages[0].seq);
    for (const m of messages) this.addEntry(state, m);
    this.changed();
  }

  /** Fetches every entry after `contiguousTo`, in pages. */
  private async fillForward(state: ConversationState): Promise<void> {
    for (;;) {
      const result = await this.call({
        case: "fetchMessages",
        value: { conversationId: state.id, afterSeq: BigInt(state.contiguousTo), beforeSeq: 0n, limit: 100, direction: Direction.FORWARD } as never,
      });
      if (result.case !== "messages") return;
      for (const m of result.value.messages) this.addEntry(state, m);
      if (!result.value.hasMore || result.value.messages.length === 0) return;
    }
  }

  // ---- incoming ------------------------------------------------------------

  private receive(topic: string, payload: Uint8Array): void {
    let envelope;
    try {
      envelope = decodeEnvelope(payload);
    } catch {
      return;
    }
    const kind = envelope.kind;
    switch (kind.case) {
      case "response": {
        const waiter = this.requests.get(kind.value.requestId);
        if (waiter) {
          this.requests.delete(kind.value.requestId);
          waiter.resolve(kind.value);
        }
        return;
      }
      case "message":
        void this.liveEntry(kind.value);
        return;
      case "receipt": {
        const r = kind.value;
        const state = this.conversations.get(r.conversationId);
        if (!state) return;
        const seq = Number(r.upToSeq);
        if (r.user === this.user) {
          if (r.kind === ReceiptKind.READ) state.readUpTo = Math.max(state.readUpTo, seq);
          state.deliveredUpTo = Math.max(state.deliveredUpTo, seq);
        } else {
          this.watchPresence(r.user);
          const bump = (m: Map<string, number>) => m.set(r.user, Math.max(m.get(r.user) ?? 0, seq));
          bump(state.othersDelivered);
          if (r.kind === ReceiptKind.READ) bump(state.othersRead);
        }
        this.changed();
        return;
      }
      case "typing": {
        const t = kind.value;
        const state = this.conversations.get(t.conversationId);
        if (!state || t.user === this.user) return;
        if (t.active) state.typing.set(t.user, Date.now() + TYPING_TTL_MS);
        else state.typing.delete(t.user);
        this.changed();
        return;
      }
      case "presence": {
        const p = kind.value;
        this.presence.set(p.user, { online: p.state === PresenceState.ONLINE, lastSeenMs: Number(p.lastSeenMs) });
        this.changed();
        return;
      }
      case "error": {
        const e = kind.value;
        const state = this.conversations.get(e.conversationId);
        const entry = state?.pending.get(e.clientMessageId);
        if (entry) {
          entry.failed = e.message || ErrorCode[e.code];
          this.changed();
        }
        return;
      }
    }
    void topic;
  }

  private async liveEntry(message: ChatMessage): Promise<void> {
    let state = this.conversations.get(message.conversationId);
    const event = message.body.case === "event" ? message.body.value : undefined;
    if (!state || event) {
      // A new conversation, or a change of one: learn its current form.
      if (!state || !this.isRemoval(message)) {
        try {
          const result = await this.call({ case: "getConversation", value: { conversationId: message.conversationId } as never });
          if (result.case === "conversation") {
            const s = this.state(result.value);
            s.conversation = result.value;
            s.gone = undefined;
            for (const m of result.value.members) this.watchPresence(m.user);
          }
        } catch {
          // Not a member (any more): keep what we know.
        }
        state = this.conversations.get(message.conversationId);
        if (!state) return;
      }
    }
    const seq = Number(message.seq);
    state.lastSeq = Math.max(state.lastSeq, seq);
    state.typing.delete(message.sender);
    if (!state.lastMessage || message.seq >= state.lastMessage.seq) state.lastMessage = message;
    if (message.sender === this.user) {
      state.accepted = true;
      state.readUpTo = Math.max(state.readUpTo, seq);
      state.deliveredUpTo = Math.max(state.deliveredUpTo, seq);
    } else {
      this.watchPresence(message.sender);
      // What one sends counts as read by its sender.
      for (const m of [state.othersRead, state.othersDelivered]) {
        m.set(message.sender, Math.max(m.get(message.sender) ?? 0, seq));
      }
    }
    if (state.loaded) {
      if (seq > state.contiguousTo + 1 && !state.gone) {
        await this.fillForward(state);
      }
      this.addEntry(state, message);
    }
    if (this.isRemoval(message)) {
      const e = message.body.value as { kind: ConversationEventKind };
      state.gone =
        e.kind === ConversationEventKind.MEMBER_LEFT
          ? "You left this group."
          : `You were removed from this group by ${message.sender}.`;
      state.conversation = { ...state.conversation, members: state.conversation.members.filter((m) => m.user !== this.user) };
      state.typing.clear();
    }
    this.sendDeliveredReceipts();
    this.changed();
  }

  /** Whether `message` is the event that took us out of its conversation. */
  private isRemoval(message: ChatMessage): boolean {
    if (message.body.case !== "event") return false;
    const e = message.body.value;
    return (
      (e.kind === ConversationEventKind.MEMBER_REMOVED && e.users.includes(this.user)) ||
      (e.kind === ConversationEventKind.MEMBER_LEFT && message.sender === this.user)
    );
  }

  private addEntry(state: ConversationState, message: ChatMessage): void {
    const seq = Number(message.seq);
    if (seq <= 0) return;
    if (seq >= state.loadedFrom && seq === state.contiguousTo + 1) {
      state.contiguousTo = seq;
      while (state.entries.has(state.contiguousTo + 1)) state.contiguousTo++;
    }
    if (message.sender === this.user) state.pending.delete(message.clientMessageId);
    if (message.action === MessageAction.EDIT || message.action === MessageAction.DELETE) {
      const target = state.entries.get(Number(message.targetSeq));
      if (target) {
        if (message.action === MessageAction.EDIT) {
          target.message = { ...target.message, body: message.body, edited: true };
        } else {
          target.message = { ...target.message, body: { case: undefined }, deleted: true };
        }
      }
      // Edits and deletes take a seq of their own; keep it as a hidden entry
      // so that the range stays contiguous.
      state.entries.set(seq, { seq, message });
      return;
    }
    const existing = state.entries.get(seq);
    if (existing && (existing.message.edited || existing.message.deleted) && !message.edited && !message.deleted) {
      return; // a live copy of an entry history already showed changed
    }
    state.entries.set(seq, { seq, message });
  }

  // ---- outgoing ------------------------------------------------------------

  /** Sends a new message (or an edit/delete of one of ours). */
  send(conversationId: string, body: Body, opts: { replyTo?: number; action?: MessageAction; target?: number } = {}): void {
    const state = this.conversations.get(conversationId);
    if (!state || state.gone) return;
    const clientMessageId = `c${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
    const message = create(ChatMessageSchema, {
      clientMessageId,
      body,
      replyToSeq: BigInt(opts.replyTo ?? 0),
      action: opts.action ?? MessageAction.NEW,
      targetSeq: BigInt(opts.target ?? 0),
    });
    if (!opts.action || opts.action === MessageAction.NEW) {
      const entry: Entry = {
        seq: 0,
        pending: clientMessageId,
        message: create(ChatMessageSchema, { ...message, sender: this.user, conversationId, serverTimeMs: BigInt(Date.now()) }),
      };
      state.pending.set(clientMessageId, entry);
    }
    this.client?.publish(`s/${conversationId}`, encodeEnvelope({ case: "message", value: message }) as never, { qos: 1 });
    this.typing(conversationId, false);
    this.changed();
  }

  private typingSent = new Map<string, number>();

  /** Tells the others we are (or stopped) typing; at most every 3 s. */
  typing(conversationId: string, active: boolean): void {
    const last = this.typingSent.get(conversationId) ?? 0;
    if (active && Date.now() - last < 3000) return;
    if (!active && last === 0) return;
    this.typingSent.set(conversationId, active ? Date.now() : 0);
    if (!this.client?.connected) return;
    this.client.publish(
      `t/${conversationId}`,
      encodeEnvelope({ case: "typing", value: create(TypingSchema, { active }) }) as never,
      { qos: 0 },
    );
  }

  /** Marks the visible conversation read up to its newest entry. */
  markRead(conversationId: string): void {
    const state = this.conversations.get(conversationId);
    if (!state || state.gone || state.readUpTo >= state.lastSeq || !this.client?.connected) return;
    state.readUpTo = state.lastSeq;
    this.receipt(conversationId, ReceiptKind.READ, state.lastSeq);
    this.changed();
  }

  private sendDeliveredReceipts(): void {
    if (!this.client?.connected) return;
    for (const state of this.conversations.values()) {
      if (state.gone) continue;
      if (state.deliveredUpTo < state.lastSeq) {
        state.deliveredUpTo = state.lastSeq;
        this.receipt(state.id, ReceiptKind.DELIVERED, state.lastSeq);
      }
    }
    if (this.visible) this.markRead(this.visible);
  }

  private receipt(conversationId: string, kind: ReceiptKind, upTo: number): void {
    this.client?.publish(
      `r/${conversationId}`,
      encodeEnvelope({ case: "receipt", value: create(ReceiptSchema, { kind, upToSeq: BigInt(upTo) }) }) as never,
      { qos: 1 },
    );
  }

  private watchPresence(user: string): void {
    if (user === this.user || this.presenceSubscribed.has(user) || !this.client?.connected) return;
    this.presenceSubscribed.add(user);
    this.client.subscribe(`p/${user}`, { qos: 1 }, (err, granted) => {
      // Refused while a message request is pending (or when blocked):
      // try again when the user shows up next.
      if (err || granted?.some((g) => g.qos === 128)) this.presenceSubscribed.delete(user);
    });
  }

  private expireTyping(): void {
    const now = Date.now();
    let any = false;
    for (const state of this.conversations.values()) {
      for (const [user, until] of state.typing) {
        if (until < now) {
          state.typing.delete(user);
          any = true;
        }
      }
    }
    if (any) this.changed();
  }

  // ---- conversations -------------------------------------------------------

  async openDirect(peer: string): Promise<string> {
    const result = await this.call({ case: "openDirect", value: { peer } as never });
    if (result.case !== "conversation") throw new Error("unexpected answer");
    const state = this.state(result.value);
    state.conversation = result.value;
    state.accepted = true;
    this.watchPresence(peer);
    this.changed();
    return result.value.id;
  }

  async createGroup(name: string, members: string[]): Promise<string> {
    const result = await this.call({ case: "createGroup", value: { name, members } as never });
    if (result.case !== "conversation") throw new Error("unexpected answer");
    this.state(result.value).conversation = result.value;
    for (const m of result.value.members) this.watchPresence(m.user);
    this.changed();
    return result.value.id;
  }

  private async change(op: Op): Promise<void> {
    const result = await this.call(op);
    if (result.case === "conversation") {
      const state = this.state(result.value);
      state.conversation = result.value;
      for (const m of result.value.members) this.watchPresence(m.user);
      this.changed();
    }
  }

  rename(conversationId: string, name: string): Promise<void> {
    return this.change({ case: "renameGroup", value: { conversationId, name } as never });
  }
  addMembers(conversationId: string, users: string[]): Promise<void> {
    return this.change({ case: "addMembers", value: { conversationId, users } as never });
  }
  removeMember(conversationId: string, user: string): Promise<void> {
    return this.change({ case: "removeMember", value: { conversationId, user } as never });
  }
  setRole(conversationId: string, user: string, role: Role): Promise<void> {
    return this.change({ case: "setRole", value: { conversationId, user, role } as never });
  }
  leave(conversationId: string): Promise<void> {
    return this.change({ case: "leaveGroup", value: { conversationId } as never });
  }

  /** Accepts the message request of a direct conversation's other member. */
  async accept(conversationId: string): Promise<void> {
    const state = this.conversations.get(conversationId);
    const peer = state && this.peer(state);
    if (!state || !peer) return;
    await this.call({ case: "acceptRequest", value: { peer } as never });
    state.accepted = true;
    this.presenceSubscribed.delete(peer);
    this.watchPresence(peer);
    // Receipts sent before reached only our own sessions: tell the peer now.
    if (state.readUpTo > 0) this.receipt(conversationId, ReceiptKind.READ, state.readUpTo);
    this.sendDeliveredReceipts();
    this.changed();
  }

  /** Blocks a user: their messages are refused from now on. */
  async block(user: string): Promise<void> {
    await this.call({ case: "blockUser", value: { user } as never });
  }

  // ---- views ---------------------------------------------------------------

  /**
   * Whether a direct conversation is a message request to us: the other
   * member wrote and we have neither written nor accepted.
   */
  isRequest(state: ConversationState): boolean {
    if (state.accepted || !this.peer(state) || !state.lastMessage) return false;
    if ([...state.entries.values()].some((e) => e.message.sender === this.user)) return false;
    return state.lastMessage.sender !== this.user;
  }

  /** The other member of a direct conversation, or the group's name. */
  title(state: ConversationState): string {
    if (state.conversation.kind === ConversationKind.GROUP) return state.conversation.name;
    return state.id.split("~").find((u) => u !== this.user) ?? state.id;
  }

  peer(state: ConversationState): string | undefined {
    if (state.conversation.kind !== ConversationKind.DIRECT) return undefined;
    return state.id.split("~").find((u) => u !== this.user);
  }

  unread(state: ConversationState): number {
    return Math.max(0, state.lastSeq - state.readUpTo);
  }

  /** Sent, delivered or read, for one of our entries: the least any other member reached. */
  tick(state: ConversationState, seq: number): "sent" | "delivered" | "read" {
    const others = state.conversation.members.map((m) => m.user).filter((u) => u !== this.user);
    if (others.length === 0) return "sent";
    const least = (m: Map<string, number>) => Math.min(...others.map((u) => m.get(u) ?? 0));
    if (least(state.othersRead) >= seq) return "read";
    if (Math.max(least(state.othersDelivered), least(state.othersRead)) >= seq) return "delivered";
    return "sent";
  }

  myRole(state: ConversationState): Role {
    return state.conversation.members.find((m) => m.user === this.user)?.role ?? Role.UNSPECIFIED;
  }
}

export class ChatError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message || ErrorCode[code]);
  }
}
