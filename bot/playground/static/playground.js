// The playground's bar over SimCord's preview page: the channel, what to try, and buttons for what
// SimCord's composer cannot do (add a reaction, open a message menu). It talks to the playground's
// own API (/playground/api/...) with the page's token, as the preview page does.
const token = window.location.hash.slice(1);
const headers = { "X-Simcord-Capability": token, "Content-Type": "application/json" };

async function call(path, body) {
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers,
    cache: "no-store",
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (!response.ok) throw new Error((await response.text()) || `HTTP ${response.status}`);
  return response.json();
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const bar = element("div", "playground-bar");
bar.setAttribute("role", "region");
bar.setAttribute("aria-label", "Playground");
const status = element("span", "playground-status");
status.setAttribute("role", "status");

function say(text) {
  status.textContent = text;
}

function viewerId() {
  const picker = document.getElementById("viewer-picker");
  return picker instanceof HTMLSelectElement ? picker.value : "";
}

async function act(messageId, action) {
  say("…");
  try {
    await call("/playground/api/message", { viewer_id: viewerId(), message_id: messageId, action });
    say("");
  } catch (error) {
    say(error instanceof Error ? error.message : String(error));
  }
}

// Under each message of the bot that shows an image: the reactions and the message menus.
function decorate(state) {
  for (const message of document.querySelectorAll("[data-message-id]")) {
    if (!(message instanceof HTMLElement) || message.querySelector(".playground-tools")) continue;
    const fromBot = [...message.querySelectorAll(".message-app-badge")].some((badge) => badge.textContent === "APP" || badge.textContent === "BOT");
    if (!fromBot || !message.querySelector("img")) continue;
    const tools = element("div", "playground-tools");
    tools.setAttribute("aria-label", "Playground actions for this message");
    tools.append(element("span", "playground-tools-label", "React"));
    for (const emoji of state.reactions) {
      const button = element("button", "playground-react", emoji);
      button.type = "button";
      button.title = `React with ${emoji}`;
      button.setAttribute("aria-label", button.title);
      button.addEventListener("click", () => act(message.dataset.messageId, `react:${emoji}`));
      tools.append(button);
    }
    tools.append(element("span", "playground-tools-label", "Apps"));
    for (const menu of state.menus) {
      const button = element("button", "playground-menu", menu);
      button.type = "button";
      button.title = `Apps → ${menu}`;
      button.addEventListener("click", () => act(message.dataset.messageId, `menu:${menu}`));
      tools.append(button);
    }
    message.append(tools);
  }
}

async function start() {
  if (!token) return;
  let state;
  try {
    state = await call("/playground/api/state");
  } catch (_) {
    return; // the preview page itself says what is wrong
  }
  const title = element("strong", "playground-title", "Horde bot playground");
  const channelLabel = element("label", "playground-channel", "Channel ");
  const channels = element("select");
  channels.setAttribute("aria-label", "Channel");
  for (const channel of state.channels) {
    const option = element("option", "", `#${channel.name}${channel.id === state.ageRestricted ? " (age-restricted)" : ""}`);
    option.value = channel.id;
    option.selected = channel.current;
    channels.append(option);
  }
  channels.addEventListener("change", async () => {
    say("Switching channel…");
    try {
      await call("/playground/api/channel", { channel_id: channels.value });
      window.location.reload();
    } catch (error) {
      say(error instanceof Error ? error.message : String(error));
    }
  });
  channelLabel.append(channels);
  bar.append(title, channelLabel);
  if (state.demoKey) {
    const hint = element("span", "playground-hint", "Demo key for /login: ");
    const key = element("code", "playground-key", state.demoKey);
    const copy = element("button", "playground-copy", "Copy");
    copy.type = "button";
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(state.demoKey);
        say("Copied.");
      } catch (_) {
        say("Select the key and copy it.");
      }
    });
    hint.append(key, copy);
    bar.append(hint);
  } else {
    bar.append(element("span", "playground-warning", "Real AI Horde: generations spend real kudos."));
  }
  bar.append(status);
  document.body.prepend(bar);
  decorate(state);
  new MutationObserver(() => decorate(state)).observe(document.body, { childList: true, subtree: true });
}

void start();
