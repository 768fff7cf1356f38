// Parley's web client: the screens and what the user does on them. The
// session (chat.ts) holds the state; everything here is drawn from it.
import { ApiError, clientConfig, createUpload, downloadUrl, logIn, signUp } from "./api.js";
import { ChatError, ChatSession, type ConversationState, type Entry } from "./chat.js";
import { ConversationEventKind, ConversationKind, MessageAction, Role, type ChatMessage } from "./proto.js";

const $ = <T extends HTMLElement = HTMLElement>(selector: string, root: ParentNode = document): T => {
  const found = root.querySelector<T>(selector);
  if (!found) throw new Error(`no ${selector}`);
  return found;
};

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string | null | undefined | false)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function time(ms: number | bigint): string {
  const d = new Date(Number(ms));
  const today = new Date().toDateString() === d.toDateString();
  return today
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleString([], { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
}

const ROLE_NAMES: Record<number, string> = { [Role.MEMBER]: "member", [Role.ADMIN]: "admin", [Role.OWNER]: "owner" };

/** One line describing a conversation event. */
function describeEvent(m: ChatMessage, me: string): string {
  if (m.body.case !== "event") return "";
  const e = m.body.value;
  const who = (u: string) => (u === me ? "you" : u);
  const actor = m.sender === me ? "You" : m.sender;
  const owner = e.newOwner ? ` ${who(e.newOwner)} is now the owner.` : "";
  switch (e.kind) {
    case ConversationEventKind.CREATED:
      return `${actor} created the group “${e.name}”${e.users.length ? ` with ${e.users.map(who).join(", ")}` : ""}.`;
    case ConversationEventKind.MEMBERS_ADDED:
      return `${actor} added ${e.users.map(who).join(", ")}.`;
    case ConversationEventKind.MEMBER_REMOVED:
      return `${actor} removed ${e.users.map(who).join(", ")}.${owner}`;
    case ConversationEventKind.MEMBER_LEFT:
      return `${actor} left.${owner}`;
    case ConversationEventKind.ROLE_CHANGED:
      return `${actor} made ${e.users.map(who).join(", ")} ${ROLE_NAMES[e.role] ?? "a member"}.${owner}`;
    case ConversationEventKind.RENAMED:
      return `${actor} renamed the group to “${e.name}”.`;
    default:
      return `${actor} changed the conversation.`;
  }
}

function preview(m: ChatMessage | undefined, me: string): string {
  if (!m) return "";
  if (m.body.case === "event") return describeEvent(m, me);
  const from = m.sender === me ? "You: " : "";
  if (m.deleted) return `${from}message deleted`;
  switch (m.body.case) {
    case "text":
      return from + m.body.value.text;
    case "media":
      return `${from}📎 ${m.body.value.fileName || m.body.value.contentType}`;
    case "ciphertext":
      return `${from}🔒 encrypted message`;
    default:
      return from;
  }
}

// ---- log-in screen ------------------------------------------------------------

function showLogin(): void {
  const form = $<HTMLFormElement>("#login-form");
  const error = $("#login-error");
  $("#login").hidden = false;
  $("#app").hidden = true;
  const submit = async (create: boolean) => {
    const username = $<HTMLInputElement>("#username").value.trim().toLowerCase();
    const password = $<HTMLInputElement>("#password").value;
    error.textContent = "";
    try {
      if (create) await signUp(username, password);
      const token = await logIn(username, password);
      sessionStorage.setItem("parley.user", username);
      sessionStorage.setItem("parley.token", token.access_token);
      sessionStorage.setItem("parley.expires", String(token.expires_at));
      await start(username, token.access_token);
    } catch (e) {
      error.textContent = e instanceof ApiError ? e.message : String(e);
    }
  };
  form.onsubmit = (ev) => {
    ev.preventDefault();
    void submit(false);
  };
  $("#signup").onclick = () => void submit(true);
}

// ---- the chat screen ------------------------------------------------------------

let session: ChatSession;
let token = "";
let current: string | undefined;
let selected: number | undefined;
let mode: { kind: "reply" | "edit"; seq: number } | undefined;

async function start(user: string, accessToken: string): Promise<void> {
  token = accessToken;
  const config = await clientConfig();
  if (config.mqtt_ws_port === null) throw new Error("this Parley node has no MQTT WebSocket listener");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  session = new ChatSession(user, accessToken, `${scheme}://${location.hostname}:${config.mqtt_ws_port}${config.mqtt_ws_path}`);
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#me").textContent = user;
  $("#attach").hidden = !config.media;
  session.onChange(render);
  session.start();
  bindChatScreen();
  render();
}

function bindChatScreen(): void {
  $<HTMLFormElement>("#new-direct").onsubmit = async (ev) => {
    ev.preventDefault();
    const input = $<HTMLInputElement>("#peer");
    await guard(async () => {
      const id = await session.openDirect(input.value.trim().toLowerCase());
      input.value = "";
      await select(id);
    });
  };
  $<HTMLFormElement>("#new-group").onsubmit = async (ev) => {
    ev.preventDefault();
    const name = $<HTMLInputElement>("#group-name");
    const members = $<HTMLInputElement>("#group-members");
    await guard(async () => {
      const id = await session.createGroup(
        name.value.trim(),
        members.value.split(/[\s,]+/).map((s) => s.toLowerCase()).filter(Boolean),
      );
      name.value = members.value = "";
      $<HTMLDetailsElement>("#new-group-box").open = false;
      await select(id);
    });
  };
  $("#back").onclick = () => {
    current = undefined;
    session.visible = undefined;
    render();
  };
  $("#logout").onclick = () => {
    sessionStorage.clear();
    session.stop();
    location.reload();
  };
  $("#info-toggle").onclick = () => {
    $("#info").hidden = !$("#info").hidden;
    render();
  };
  const composer = $<HTMLTextAreaElement>("#composer");
  composer.oninput = () => {
    if (current) session.typing(current, composer.value.length > 0);
  };
  composer.onkeydown = (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) {
      ev.preventDefault();
      $<HTMLFormElement>("#compose").requestSubmit();
    }
  };
  $<HTMLFormElement>("#compose").onsubmit = (ev) => {
    ev.preventDefault();
    const text = composer.value.trim();
    if (!current || !text) return;
    if (mode?.kind === "edit") {
      session.send(current, { case: "text", value: { text } as never }, { action: MessageAction.EDIT, target: mode.seq });
    } else {
      session.send(current, { case: "text", value: { text } as never }, { replyTo: mode?.seq });
    }
    composer.value = "";
    mode = undefined;
    selected = undefined;
  };
  $("#action-reply").onclick = () => {
    if (selected) mode = { kind: "reply", seq: selected };
    selected = undefined;
    composer.focus();
    render();
  };
  $("#action-edit").onclick = () => {
    const entry = selected && current ? session.conversations.get(current)?.entries.get(selected) : undefined;
    if (entry?.message.body.case === "text") {
      mode = { kind: "edit", seq: entry.seq };
      composer.value = entry.message.body.value.text;
    }
    selected = undefined;
    composer.focus();
    render();
  };
  $("#action-delete").onclick = () => {
    if (current && selected) session.send(current, { case: undefined }, { action: MessageAction.DELETE, target: selected });
    selected = undefined;
    render();
  };
  $("#accept").onclick = () => {
    if (current) void guard(() => session.accept(current!));
  };
  $("#block").onclick = () => {
    const state = current ? session.conversations.get(current) : undefined;
    const peer = state && session.peer(state);
    if (peer) void guard(() => session.block(peer));
  };
  $("#mode-cancel").onclick = () => {
    mode = undefined;
    composer.value = "";
    render();
  };
  $("#attach").onclick = () => $<HTMLInputElement>("#file").click();
  $<HTMLInputElement>("#file").onchange = async (ev) => {
    const input = ev.target as HTMLInputElement;
    const file = input.files?.[0];
    input.value = "";
    if (!file || !current) return;
    const conversationId = current;
    await guard(async () => {
      const type = file.type || "application/octet-stream";
      const upload = await createUpload(token, conversationId, type, file.size);
      const put = await fetch(upload.upload_url, {
        method: upload.method,
        headers: Object.fromEntries(Object.entries(upload.headers).filter(([k]) => k.toLowerCase() !== "content-length")),
        body: file,
      });
      if (!put.ok) throw new Error(`upload failed: ${put.status}`);
      session.send(conversationId, {
        case: "media",
        value: { objectKey: upload.object_key, contentType: type, size: BigInt(file.size), fileName: file.name } as never,
      });
    });
  };
  const messages = $("#messages");
  messages.onscroll = () => {
    if (messages.scrollTop < 40 && current) void session.loadOlder(current);
  };
  document.addEventListener("visibilitychange", () => {
    if (current && document.visibilityState === "visible") session.markRead(current);
  });
}

async function guard(work: () => Promise<void>): Promise<void> {
  const toast = $("#toast");
  try {
    toast.textContent = "";
    await work();
  } catch (e) {
    toast.textContent = e instanceof ChatError || e instanceof ApiError || e instanceof Error ? e.message : String(e);
  }
}

async function select(id: string): Promise<void> {
  current = id;
  session.visible = id;
  selected = undefined;
  mode = undefined;
  render();
  await session.open(id);
  session.markRead(id);
  render();
  const messages = $("#messages");
  messages.scrollTop = messages.scrollHeight;
}

function presenceText(state: ConversationState): string {
  const typing = [...state.typing.keys()];
  if (typing.length) return `${typing.join(", ")} ${typing.length > 1 ? "are" : "is"} typing…`;
  const peer = session.peer(state);
  if (peer) {
    const p = session.presence.get(peer);
    if (!p) return "";
    return p.online ? "online" : `last seen ${time(p.lastSeenMs)}`;
  }
  const online = state.conversation.members.filter((m) => m.user === session.user || session.presence.get(m.user)?.online);
  return `${state.conversation.members.length} members, ${online.length} online`;
}

function render(): void {
  if (!session) return;
  const app = $("#app");
  app.classList.toggle("has-current", current !== undefined);
  const status = $("#connection");
  status.textContent = session.connected ? (session.synced ? "" : "Catching up…") : "Offline — reconnecting…";
  status.dataset.state = session.connected ? (session.synced ? "online" : "syncing") : "offline";
  renderList();
  renderConversation();
}

function renderList(): void {
  const list = $("#conversations");
  const states = [...session.conversations.values()].sort(
    (a, b) => Number(b.lastMessage?.serverTimeMs ?? b.conversation.updatedAtMs) - Number(a.lastMessage?.serverTimeMs ?? a.conversation.updatedAtMs),
  );
  list.replaceChildren(
    ...states.map((state) => {
      const peer = session.peer(state);
      const online = peer ? session.presence.get(peer)?.online : undefined;
      const unread = session.unread(state);
      const typing = [...state.typing.keys()];
      const item = el(
        "li",
        { class: `conv${state.id === current ? " current" : ""}${state.gone ? " gone" : ""}`, "data-id": state.id, "data-title": session.title(state) },
        peer
          ? el("span", { class: `dot${online ? " online" : ""}`, title: online ? "online" : "offline" })
          : el("span", { class: "dot group", "aria-hidden": "true" }),
        el(
          "div",
          { class: "conv-text" },
          el("div", { class: "conv-title" }, session.title(state), state.conversation.kind === ConversationKind.GROUP ? el("span", { class: "badge" }, "group") : null),
          el("div", { class: "preview" }, typing.length ? `${typing.join(", ")} typing…` : preview(state.lastMessage, session.user)),
        ),
        unread > 0 ? el("span", { class: "unread", "data-unread": String(unread) }, String(unread)) : null,
      );
      item.onclick = () => void select(state.id);
      return item;
    }),
  );
}

function renderConversation(): void {
  const pane = $("#chat");
  const state = current ? session.conversations.get(current) : undefined;
  pane.hidden = !state;
  if (!state) return;
  $("#chat-title").textContent = session.title(state);
  $("#chat-status").textContent = presenceText(state);
  const isGroup = state.conversation.kind === ConversationKind.GROUP;
  $("#info-toggle").hidden = !isGroup || !!state.gone;
  if (!isGroup || state.gone) $("#info").hidden = true;
  renderInfo(state);

  const messages = $("#messages");
  const atBottom = messages.scrollHeight - messages.scrollTop - messages.clientHeight < 60;
  const entries = [...state.entries.values()]
    .filter((e) => e.message.action !== MessageAction.EDIT && e.message.action !== MessageAction.DELETE)
    .sort((a, b) => a.seq - b.seq);
  const nodes: Node[] = [];
  if (state.hasOlder) nodes.push(el("div", { class: "older" }, "Scroll up for older messages"));
  for (const entry of entries) nodes.push(renderEntry(state, entry));
  for (const entry of state.pending.values()) nodes.push(renderEntry(state, entry));
  messages.replaceChildren(...nodes);
  if (atBottom) messages.scrollTop = messages.scrollHeight;

  const request = $("#request");
  request.hidden = !session.isRequest(state) || !!state.gone;
  $("#request-text").textContent = `${session.title(state)} wants to chat with you.`;
  const gone = $("#gone");
  gone.hidden = !state.gone;
  gone.textContent = state.gone ?? "";
  $("#compose").hidden = !!state.gone;
  const entry = selected ? state.entries.get(selected) : undefined;
  $("#actions").hidden = !entry || !!state.gone;
  const mine = entry?.message.sender === session.user && !entry?.message.deleted;
  $("#action-edit").hidden = !mine || entry?.message.body.case !== "text";
  $("#action-delete").hidden = !mine;
  const modeBar = $("#mode");
  modeBar.hidden = !mode;
  if (mode) {
    const target = state.entries.get(mode.seq);
    $("#mode-text").textContent = `${mode.kind === "edit" ? "Editing" : "Replying to"}: ${preview(target?.message, session.user)}`;
  }
}

function renderEntry(state: ConversationState, entry: Entry): HTMLElement {
  const m = entry.message;
  if (m.body.case === "event") {
    return el("div", { class: "entry event", "data-seq": String(entry.seq) }, describeEvent(m, session.user));
  }
  const mine = m.sender === session.user;
  const attrs: Record<string, string> = { class: `entry${mine ? " mine" : ""}${entry.seq === selected ? " selected" : ""}` };
  if (entry.seq) attrs["data-seq"] = String(entry.seq);
  if (entry.pending) attrs["data-pending"] = entry.pending;
  const bubble = el("div", attrs);
  if (!mine && state.conversation.kind === ConversationKind.GROUP) bubble.append(el("div", { class: "sender" }, m.sender));
  if (m.replyToSeq) {
    const quoted = state.entries.get(Number(m.replyToSeq));
    bubble.append(el("div", { class: "reply-quote" }, quoted ? `${quoted.message.sender}: ${preview(quoted.message, "")}` : `reply to #${m.replyToSeq}`));
  }
  if (m.deleted) bubble.append(el("div", { class: "text deleted" }, "message deleted"));
  else if (m.body.case === "text") bubble.append(el("div", { class: "text" }, m.body.value.text));
  else if (m.body.case === "media") bubble.append(renderMedia(m.body.value.objectKey, m.body.value.contentType, m.body.value.fileName));
  else if (m.body.case === "ciphertext") bubble.append(el("div", { class: "text deleted" }, "🔒 encrypted message"));
  const meta = el("div", { class: "meta" }, m.edited && !m.deleted ? el("span", { class: "edited" }, "edited") : null, time(m.serverTimeMs));
  if (mine) {
    const tick = entry.failed ? "failed" : entry.pending ? "pending" : session.tick(state, entry.seq);
    const glyph = { failed: "⚠", pending: "🕓", sent: "✓", delivered: "✓✓", read: "✓✓" }[tick];
    meta.append(el("span", { class: `tick ${tick}`, "data-tick": tick, title: entry.failed ?? tick }, glyph));
  }
  bubble.append(meta);
  if (entry.seq && !state.gone) {
    bubble.onclick = () => {
      selected = selected === entry.seq ? undefined : entry.seq;
      render();
    };
  }
  return bubble;
}

function renderMedia(objectKey: string, contentType: string, fileName: string): HTMLElement {
  const link = el("a", { class: "media", href: "#" }, `Attachment: ${fileName || contentType}`);
  link.onclick = (ev) => {
    ev.preventDefault();
    ev.stopPropagation();
    void guard(async () => {
      const { download_url } = await downloadUrl(token, objectKey);
      if (contentType.startsWith("image/")) link.replaceWith(el("img", { class: "media", src: download_url, alt: fileName }));
      else window.open(download_url, "_blank");
    });
  };
  return link;
}

function renderInfo(state: ConversationState): void {
  const panel = $("#info");
  if (panel.hidden) return;
  const role = session.myRole(state);
  const id = state.id;
  const rows = state.conversation.members.map((member) => {
    const row = el(
      "li",
      { "data-user": member.user },
      el("span", { class: `dot${member.user === session.user || session.presence.get(member.user)?.online ? " online" : ""}` }),
      el("span", { class: "member-name" }, member.user === session.user ? `${member.user} (you)` : member.user),
    );
    if (member.user === session.user || role !== Role.OWNER) row.append(el("span", { class: "role" }, ROLE_NAMES[member.role] ?? ""));
    if (member.user !== session.user) {
      if (role === Role.OWNER) {
        const select = el(
          "select",
          { class: "set-role", "aria-label": `role of ${member.user}` },
          ...[Role.MEMBER, Role.ADMIN, Role.OWNER].map((r) => {
            const option = el("option", { value: String(r) }, ROLE_NAMES[r]);
            option.selected = r === member.role;
            return option;
          }),
        );
        select.onchange = () => void guard(() => session.setRole(id, member.user, Number(select.value) as Role));
        row.append(select);
      }
      if (role >= Role.ADMIN && role > member.role) {
        const remove = el("button", { class: "remove", type: "button" }, "Remove");
        remove.onclick = () => void guard(() => session.removeMember(id, member.user));
        row.append(remove);
      }
    }
    return row;
  });
  $("#members").replaceChildren(...rows);
  $("#admin-tools").hidden = role < Role.ADMIN;
  $<HTMLFormElement>("#add-form").onsubmit = (ev) => {
    ev.preventDefault();
    const input = $<HTMLInputElement>("#add-member");
    const users = input.value.split(/[\s,]+/).map((s) => s.toLowerCase()).filter(Boolean);
    void guard(async () => {
      await session.addMembers(id, users);
      input.value = "";
    });
  };
  $<HTMLFormElement>("#rename-form").onsubmit = (ev) => {
    ev.preventDefault();
    const input = $<HTMLInputElement>("#rename");
    void guard(async () => {
      await session.rename(id, input.value.trim());
      input.value = "";
    });
  };
  $("#leave").onclick = () => void guard(() => session.leave(id));
}

// ---- boot -------------------------------------------------------------------------

const savedUser = sessionStorage.getItem("parley.user");
const savedToken = sessionStorage.getItem("parley.token");
const expires = Number(sessionStorage.getItem("parley.expires") ?? 0);
if (savedUser && savedToken && expires * 1000 > Date.now() + 60_000) {
  start(savedUser, savedToken).catch(() => showLogin());
} else {
  showLogin();
}
