// Agentry's web chat page: one WebSocket (docs/protocol.md), no framework, no build step.
// Everything that comes from a frame is rendered with textContent, never as HTML.
"use strict";

const params = new URLSearchParams(location.search);
const hash = new URLSearchParams(location.hash.slice(1));
const $ = (id) => document.getElementById(id);

const state = {
  ws: null,
  retry: 0, // reconnect attempts since the last open socket
  current: null, // the conversation shown; null: a new one starts with the next message
  pendingNew: null, // client id of the message that starts a new conversation
  conversations: new Map(), // id -> {lastSeq, followed, el, turns: Map turn_id -> turn}
  pendingUser: new Map(), // client message id -> the user bubble shown before it was accepted
  approvals: [], // tool.approval_required frames waiting for the dialog, each with its `deadline`
  approvalTimer: 0, // counts down the dialog's deadline while it is open
  afterDrop: "", // what the socket's drop left unconfirmed, said again once reconnected
  nextId: 1,
};

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = new URLSearchParams();
  // A token goes in the page's fragment (#token=…), which the browser never sends to a
  // server; the socket can only carry it in its query (browsers set no WebSocket headers).
  if (hash.get("token")) query.set("token", hash.get("token"));
  else if (params.get("user")) query.set("user", params.get("user"));
  const suffix = query.toString() ? "?" + query.toString() : "";
  return `${scheme}//${location.host}/ws${suffix}`;
}

// Unique across page loads: a replayed `message.accepted` echoes the id of the message it
// accepted, and must not confirm a bubble of this page that merely reuses a counter value.
const PAGE_ID = Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(16).padStart(2, "0")).join("");

function clientId(prefix) {
  return `${prefix}-${PAGE_ID}-${state.nextId++}`;
}

function send(frame) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(frame));
    return true;
  }
  notice("not connected: reconnecting…");
  return false;
}

// Runs `change` (which may grow the transcript) and keeps the transcript scrolled to its end
// if it was there: a new answer comes into view, but not while the user reads further up.
function followingEnd(change) {
  const box = $("transcripts");
  const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 48;
  change();
  if (atEnd) box.scrollTop = box.scrollHeight;
}

function scrollToEnd() {
  const box = $("transcripts");
  box.scrollTop = box.scrollHeight;
}

function notice(text) {
  $("notice").textContent = text;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---- connection ------------------------------------------------------------------------

function connect() {
  setConnection("connecting", "connecting…");
  const ws = new WebSocket(socketUrl());
  state.ws = ws;
  ws.addEventListener("open", () => {
    state.retry = 0;
    setConnection("open", "connected");
    notice(state.afterDrop);
    state.afterDrop = "";
    send({ type: "list_conversations", id: clientId("l") });
    // Catch up on every conversation this page follows, from the last seq it has.
    for (const [id, conversation] of state.conversations) {
      if (conversation.followed) resume(id, conversation.lastSeq);
    }
  });
  ws.addEventListener("message", (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    followingEnd(() => onFrame(frame));
  });
  ws.addEventListener("close", () => {
    if (state.ws !== ws) return;
    state.ws = null;
    unconfirmed();
    const delay = Math.min(5000, 250 * 2 ** state.retry++);
    setConnection("closed", `disconnected: retrying in ${(delay / 1000).toFixed(1)} s`);
    setTimeout(connect, delay);
  });
}

// Messages whose `message.accepted` had not come when the socket dropped may or may not have
// been accepted (docs/protocol.md): sending one again could run its turn twice, so the page
// does not; its bubble and the notice say so. One posted to a conversation is confirmed when
// the reconnect's resume replays its `message.accepted`; the first of a new conversation is,
// if accepted, in the conversation list (fetched again on reconnect). New messages go at once.
function unconfirmed() {
  if (state.pendingUser.size === 0) return;
  for (const bubble of state.pendingUser.values()) {
    bubble.dataset.state = "unconfirmed";
    bubble.title = "not confirmed: the connection dropped before the server accepted it";
  }
  const startingNew = state.pendingNew !== null;
  if (startingNew) state.pendingUser.delete(state.pendingNew); // no conversation of this page to confirm it in
  state.pendingNew = null;
  state.afterDrop = startingNew
    ? "The connection dropped before your message was confirmed: it may or may not have started a " +
      "conversation. If it is not in the list, send it again."
    : "The connection dropped before your message was confirmed: if it stays marked not confirmed, send it again.";
  notice(state.afterDrop);
}

function setConnection(stateName, text) {
  const node = $("connection");
  node.dataset.state = stateName;
  node.textContent = text;
}

function resume(conversationId, afterSeq) {
  const conversation = state.conversations.get(conversationId);
  if (conversation) conversation.resuming = true; // later frames wait for the replay
  send({ type: "resume", conversation_id: conversationId, after_seq: afterSeq, id: clientId("r") });
}

// ---- frames ----------------------------------------------------------------------------

function onFrame(frame) {
  if (frame.type === "conversations") return renderList(frame.conversations || []);
  if (frame.type === "error") return onError(frame);
  if (typeof frame.conversation_id !== "string") return;
  const conversation = conversationOf(frame.conversation_id);
  conversation.followed = true; // the socket gets only frames of conversations it follows
  if (typeof frame.seq === "number") {
    if (frame.seq <= conversation.lastSeq) return; // already shown
    if (frame.seq > conversation.lastSeq + 1 && conversation.lastSeq > 0 && !conversation.gapAccepted) {
      // Frames are missing: fetch them from the last one shown (this one comes again after them).
      if (!conversation.resuming) resume(frame.conversation_id, conversation.lastSeq);
      return;
    }
    conversation.lastSeq = frame.seq;
    conversation.resuming = false;
    conversation.gapAccepted = false;
  }
  if (frame.type === "message.accepted") return onAccepted(conversation, frame);
  if (!frame.turn_id) return;
  const turn = turnOf(conversation, frame.turn_id);
  const handler = HANDLERS[frame.type];
  if (handler) handler(turn, frame);
}

const HANDLERS = {
  "turn.started": (turn) => setStatus(turn, "running", "working…"),
  "thinking.started": (turn) => {
    turn.thinking.hidden = false;
    turn.thinking.classList.add("active");
    turn.thinking.textContent = "Thinking";
  },
  "thinking.finished": (turn, frame) => {
    turn.thinking.classList.remove("active");
    turn.thinking.textContent = `Thought for ${((frame.elapsed_ms || 0) / 1000).toFixed(1)} s`;
  },
  "tool.approval_required": askApproval,
  "tool.started": (turn, frame) => {
    setChip(turn, frame.call_id, frame.tool, "running", "running");
    dropApproval(frame.turn_id, frame.call_id); // decided (on another device, maybe)
  },
  "tool.finished": (turn, frame) => {
    const outcome = frame.ok ? "done" : "failed";
    const chip = setChip(turn, frame.call_id, frame.tool, outcome, toolOutcome(frame));
    if (!frame.ok && typeof frame.error === "string") chip.dataset.error = frame.error;
    dropApproval(frame.turn_id, frame.call_id);
  },
  "message.delta": (turn, frame) => {
    turn.answer.textContent += frame.text || "";
  },
  "message.reset": (turn) => {
    turn.answer.textContent = "";
  },
  "turn.completed": (turn, frame) => {
    turn.answer.textContent = frame.text || "";
    endTurn(turn, "completed", "");
  },
  "turn.failed": (turn, frame) => {
    const error = frame.error || {};
    endTurn(turn, "failed", `failed (${error.code}): ${error.message || ""}`);
  },
};

// How a tool call ended, in words: "done", or "failed" with the tool error code as words and,
// when waiting helps (`retry_after_ms`), when to retry: "failed: rate limited, retry in 12 s".
// Frames stored before codes were sent have none; the code `failed` would repeat the word.
function toolOutcome(frame) {
  if (frame.ok) return "done";
  let text = "failed";
  if (typeof frame.error === "string" && frame.error && frame.error !== "failed") {
    text += `: ${frame.error.replace(/_/g, " ")}`;
  }
  if (typeof frame.retry_after_ms === "number" && frame.retry_after_ms > 0) {
    text += `, retry in ${Math.ceil(frame.retry_after_ms / 1000)} s`;
  }
  return text;
}

function onAccepted(conversation, frame) {
  if (frame.id && frame.id === state.pendingNew) {
    state.pendingNew = null;
    const fresh = state.conversations.get(null);
    if (fresh) {
      // The new conversation's transcript so far becomes this id's.
      conversation.el.replaceWith(fresh.el);
      conversation.el = fresh.el;
      fresh.el.dataset.conversationId = frame.conversation_id;
      state.conversations.delete(null);
    }
    conversation.followed = true;
    show(frame.conversation_id);
    send({ type: "list_conversations", id: clientId("l") });
  }
  const bubble = frame.id ? state.pendingUser.get(frame.id) : undefined;
  if (bubble) {
    bubble.dataset.accepted = "true";
    delete bubble.dataset.state; // unconfirmed after a drop: the replay confirms it
    bubble.removeAttribute("title");
    state.pendingUser.delete(frame.id);
  }
}

// A refusal names its limit in `message`; `retry_after_ms`, when present, says when the same
// frame may succeed. A refused message was not accepted: its bubble says so, not "sent".
function onError(frame) {
  const conversation = frame.conversation_id ? state.conversations.get(frame.conversation_id) : undefined;
  if (conversation && frame.code === "resume_required") {
    // The gateway could not fetch frames this socket missed: fetch them ourselves.
    return resume(frame.conversation_id, conversation.lastSeq);
  }
  if (conversation && frame.code === "resume_gap") conversation.gapAccepted = true; // expired: go on from the next kept
  else if (conversation) conversation.resuming = false; // a refused resume: the next gap asks again
  const wait = typeof frame.retry_after_ms === "number" ? ` (retry in ${(frame.retry_after_ms / 1000).toFixed(1)} s)` : "";
  notice(`${frame.code}: ${frame.message}${wait}`);
  if (frame.id && frame.id === state.pendingNew) state.pendingNew = null;
  const bubble = frame.id ? state.pendingUser.get(frame.id) : undefined;
  if (bubble) {
    bubble.dataset.state = "refused";
    bubble.title = `not sent: ${frame.code}`;
    state.pendingUser.delete(frame.id);
  }
}

// ---- conversations and turns -----------------------------------------------------------

function conversationOf(id) {
  let conversation = state.conversations.get(id);
  if (!conversation) {
    const node = el("div", "transcript");
    node.dataset.conversationId = id === null ? "" : id;
    node.hidden = id !== state.current;
    $("transcripts").append(node);
    // resuming: a resume is on its way; gapAccepted: the next seq may jump (frames expired).
    conversation = { lastSeq: 0, followed: false, resuming: false, gapAccepted: false, el: node, turns: new Map() };
    state.conversations.set(id, conversation);
  }
  return conversation;
}

function turnOf(conversation, turnId) {
  let turn = conversation.turns.get(turnId);
  if (!turn) {
    const node = el("div", "turn");
    node.dataset.turnId = turnId;
    const thinking = el("div", "thinking");
    thinking.hidden = true;
    const chips = el("div", "chips");
    const answer = el("div", "answer");
    const footer = el("div", "status");
    const cancel = el("button", "cancel", "Cancel");
    cancel.type = "button";
    cancel.addEventListener("click", () => send({ type: "cancel", turn_id: turnId, id: clientId("c") }));
    node.append(thinking, chips, answer, footer, cancel);
    conversation.el.append(node);
    turn = { turnId, node, thinking, chips, answer, footer, cancel, chipsById: new Map() };
    conversation.turns.set(turnId, turn);
  }
  return turn;
}

function setStatus(turn, stateName, text) {
  turn.footer.dataset.state = stateName;
  turn.footer.textContent = text;
}

function endTurn(turn, stateName, text) {
  setStatus(turn, stateName, text);
  turn.thinking.classList.remove("active");
  turn.cancel.remove();
  turn.node.dataset.state = stateName;
  for (const approval of state.approvals.filter((a) => a.turn_id === turn.turnId)) {
    dropApproval(approval.turn_id, approval.call_id);
  }
}

function setChip(turn, callId, tool, stateName, label) {
  let chip = turn.chipsById.get(callId);
  if (!chip) {
    chip = el("span", "chip");
    chip.dataset.callId = callId;
    turn.chips.append(chip);
    turn.chipsById.set(callId, chip);
  }
  chip.dataset.state = stateName;
  chip.dataset.tool = tool;
  chip.textContent = `${tool}: ${label}`;
  return chip;
}

function show(id) {
  state.current = id;
  for (const [key, conversation] of state.conversations) conversation.el.hidden = key !== id;
  scrollToEnd();
  for (const button of document.querySelectorAll("#conversations button")) {
    button.setAttribute("aria-current", String(button.dataset.conversationId === id));
  }
}

function open(id) {
  const conversation = conversationOf(id);
  show(id);
  if (!conversation.followed) {
    conversation.followed = true;
    resume(id, conversation.lastSeq);
  }
}

function renderList(conversations) {
  const list = $("conversations");
  list.replaceChildren();
  for (const item of conversations) {
    const button = el("button");
    button.type = "button";
    button.dataset.conversationId = item.conversation_id;
    button.setAttribute("aria-current", String(item.conversation_id === state.current));
    button.append(el("span", "title", item.title || "(untitled)"));
    const when = el("time", "", new Date(item.last_activity_at * 1000).toLocaleString());
    when.dateTime = new Date(item.last_activity_at * 1000).toISOString();
    button.append(when);
    button.addEventListener("click", () => open(item.conversation_id));
    const li = el("li");
    li.append(button);
    list.append(li);
  }
}

// ---- approvals -------------------------------------------------------------------------

// `expires_in_ms` counts from when the frame came (a replayed one carries what is left, 0
// once passed): no answer by then means denied, and an `approve` after it is refused with
// `approval_expired`. So the dialog closes at the deadline, and never opens for a call whose
// deadline has passed; the chip says the call was not approved in time.
function askApproval(turn, frame) {
  if (!frame.args_sha256) return; // stored before digests existed: long expired
  const left = typeof frame.expires_in_ms === "number" ? frame.expires_in_ms : 0;
  if (left <= 0) {
    expireApproval(frame);
    return showNextApproval();
  }
  setChip(turn, frame.call_id, frame.tool, "waiting", "awaiting approval");
  const key = (a) => a.turn_id === frame.turn_id && a.call_id === frame.call_id;
  if (!state.approvals.some(key)) state.approvals.push({ ...frame, deadline: performance.now() + left });
  showNextApproval();
}

function msLeft(approval) {
  return approval.deadline - performance.now();
}

// The call's deadline passed unanswered: the reasoner denies it. Later frames of the call
// (`tool.started`, `tool.finished`) still update its chip.
function expireApproval(approval) {
  state.approvals = state.approvals.filter((a) => !(a.turn_id === approval.turn_id && a.call_id === approval.call_id));
  const turn = state.conversations.get(approval.conversation_id)?.turns.get(approval.turn_id);
  if (turn) setChip(turn, approval.call_id, approval.tool, "expired", "approval expired: not run");
  const dialog = $("approval");
  if (dialog.open && dialog.dataset.turnId === approval.turn_id && dialog.dataset.callId === approval.call_id) {
    dialog.close();
    notice(`No answer in time: ${approval.tool} was not approved and does not run.`);
  }
}

function dropApproval(turnId, callId) {
  state.approvals = state.approvals.filter((a) => !(a.turn_id === turnId && a.call_id === callId));
  const dialog = $("approval");
  if (dialog.open && dialog.dataset.turnId === turnId && dialog.dataset.callId === callId) dialog.close();
  showNextApproval();
}

function showNextApproval() {
  const dialog = $("approval");
  if (dialog.open) return;
  clearInterval(state.approvalTimer);
  for (const approval of state.approvals.filter((a) => msLeft(a) <= 0)) expireApproval(approval); // expired in the queue
  if (state.approvals.length === 0) return;
  const approval = state.approvals[0];
  dialog.dataset.turnId = approval.turn_id;
  dialog.dataset.callId = approval.call_id;
  $("approval-tool").textContent = approval.tool;
  $("approval-arguments").textContent = JSON.stringify(approval.arguments, null, 2);
  const countDown = () => {
    const left = msLeft(approval);
    if (left > 0) {
      $("approval-expiry").textContent = `No answer within ${Math.ceil(left / 1000)} s means denied.`;
      return;
    }
    expireApproval(approval);
    showNextApproval();
  };
  dialog.showModal();
  countDown();
  state.approvalTimer = setInterval(countDown, 250);
}

function decide(approved) {
  const frame = state.approvals.shift();
  $("approval").close();
  if (frame) {
    send({
      type: "approve",
      conversation_id: frame.conversation_id,
      turn_id: frame.turn_id,
      call_id: frame.call_id,
      args_sha256: frame.args_sha256,
      approved,
      id: clientId("p"),
    });
  }
  showNextApproval();
}

// ---- the composer ----------------------------------------------------------------------

function submit(event) {
  event.preventDefault();
  const text = $("text").value;
  if (!text.trim()) return;
  const id = clientId("m");
  const frame = { type: "message", text, id };
  if (state.current !== null) frame.conversation_id = state.current;
  else if (state.pendingNew) return notice("wait: the new conversation is starting");
  if (!send(frame)) return;
  if (state.current === null) {
    state.pendingNew = id;
    // A first message left unconfirmed by a drop belongs to no conversation this page knows.
    for (const old of conversationOf(null).el.querySelectorAll('.user[data-state="unconfirmed"]')) old.remove();
  }
  const bubble = el("div", "user", text);
  conversationOf(state.current).el.append(bubble);
  state.pendingUser.set(id, bubble);
  $("text").value = "";
  scrollToEnd(); // what was just sent, and the answer below it
}

function startNew() {
  state.pendingNew = null;
  const fresh = state.conversations.get(null);
  if (fresh) {
    fresh.el.remove();
    state.conversations.delete(null);
  }
  conversationOf(null);
  show(null);
  $("text").focus();
}

document.addEventListener("DOMContentLoaded", () => {
  $("composer").addEventListener("submit", submit);
  $("text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) submit(event);
  });
  $("new-conversation").addEventListener("click", startNew);
  $("approve").addEventListener("click", () => decide(true));
  $("deny").addEventListener("click", () => decide(false));
  $("approval").addEventListener("cancel", (event) => event.preventDefault()); // Esc decides nothing
  conversationOf(null);
  connect();
});
