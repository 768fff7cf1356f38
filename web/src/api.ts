// Parley's HTTP API (see /v1/openapi.json): accounts, tokens and media.

/** An error answered by the HTTP API: `{"error": code, "message": text}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

async function call<T>(method: string, path: string, body?: unknown, token?: string): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (token) headers["authorization"] = `Bearer ${token}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const json = text ? JSON.parse(text) : {};
  if (!response.ok) {
    throw new ApiError(response.status, json?.error ?? `http_${response.status}`, json?.message ?? response.statusText);
  }
  return json as T;
}

export interface Token {
  access_token: string;
  expires_at: number;
}

export function signUp(username: string, password: string): Promise<{ username: string }> {
  return call("POST", "/v1/users", { username, password });
}

export function logIn(username: string, password: string): Promise<Token> {
  return call("POST", "/v1/tokens", { username, password });
}

export interface ClientConfig {
  mqtt_ws_port: number | null;
  mqtt_ws_path: string;
  media: boolean;
}

export function clientConfig(): Promise<ClientConfig> {
  return call("GET", "/client-config.json");
}

export interface Upload {
  object_key: string;
  upload_url: string;
  method: string;
  headers: Record<string, string>;
}

export function createUpload(
  token: string,
  conversationId: string,
  contentType: string,
  size: number,
): Promise<Upload> {
  return call("POST", "/v1/media/uploads", { conversation_id: conversationId, content_type: contentType, size }, token);
}

export function downloadUrl(token: string, objectKey: string): Promise<{ download_url: string }> {
  return call("GET", `/v1/media/${objectKey.split("/").map(encodeURIComponent).join("/")}`, undefined, token);
}
