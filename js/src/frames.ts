/**
 * Display frames fetched over HTTP from the Jupyter server extension (oremda_lab/widget/server.py).
 *
 * State and policy: a picture inside a comm message crosses the kernel websocket, which
 * the browser reads slowly for large messages after a quiet spell; the kernel can instead
 * write the picture to a frame file that the server serves. It does so only after this
 * page proved it can read what the kernel writes (`enableFrames`: the kernel writes a probe
 * with a random token, the page fetches it through the server and confirms). Without the
 * server extension, with a remote kernel, or anywhere the fetch fails, pictures keep
 * travelling inside the messages.
 */
import type { Channel } from "./model";

/** The server's base URL and token, as JupyterLab and Notebook 7 put them in the page. */
function pageConfig(): { baseUrl: string; token: string } {
  try {
    const el = document.getElementById("jupyter-config-data");
    const data = el?.textContent ? JSON.parse(el.textContent) : {};
    return { baseUrl: String(data.baseUrl ?? "/"), token: String(data.token ?? "") };
  } catch {
    return { baseUrl: "/", token: "" };
  }
}

/** The URL of frame `name` (the route oremda_lab/widget/server.py serves). */
export function frameUrl(name: string, baseUrl = pageConfig().baseUrl): string {
  return `${baseUrl.replace(/\/?$/, "/")}oremda-lab/frames/${encodeURIComponent(name)}`;
}

/** The frame's bytes, or null (gone: a newer frame replaced it; or the fetch failed: `failed` true). */
export async function fetchFrame(name: string): Promise<{ bytes: DataView | null; failed: boolean }> {
  const { token } = pageConfig();
  try {
    const r = await fetch(frameUrl(name), { cache: "no-store", headers: token ? { Authorization: `token ${token}` } : {} });
    if (r.status === 404) return { bytes: null, failed: false };
    if (!r.ok) return { bytes: null, failed: true };
    return { bytes: new DataView(await r.arrayBuffer()), failed: false };
  } catch {
    return { bytes: null, failed: true };
  }
}

/** The handshake: true when the kernel now sends pictures as frame files to this page. */
export async function enableFrames(channel: Channel): Promise<boolean> {
  const r = await channel.request({ type: "frames" });
  if (!r.ok || !r.probe || !r.token) return false;
  const { bytes } = await fetchFrame(r.probe);
  if (!bytes || new TextDecoder().decode(bytes) !== r.token) return false;
  return (await channel.request({ type: "frames", confirm: r.probe })).ok;
}
