import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApiError } from "./errors.js";
import { VirtfleetApi } from "./virtfleet-api.js";

interface Seen {
  method: string;
  url: string;
  idempotencyKey: string | undefined;
  body: string;
}

const view = {
  name: "web",
  version: 2,
  spec: { memoryMiB: 512, vcpus: 1, disks: [{ sizeGiB: 4, format: "qcow2", backing: "deb.qcow2" }] },
  tenant: "acme",
  createdAt: "2026-01-01T00:00:00.000Z",
  updatedAt: "2026-01-02T00:00:00.000Z",
};

let server: Server;
let api: VirtfleetApi;
const seen: Seen[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => {
      body += c.toString("utf8");
    });
    req.on("end", () => {
      const key = req.headers["idempotency-key"];
      seen.push({ method: req.method ?? "", url: req.url ?? "", idempotencyKey: key as string | undefined, body });
      const send = (status: number, answer: unknown, type = "application/json") => {
        res.writeHead(status, { "content-type": type });
        res.end(JSON.stringify(answer));
      };
      if (req.url === "/v1/templates/used")
        return send(
          409,
          { type: "x", title: "Conflict", status: 409, code: "NAME_CLASH", detail: "used by pool ci", field: "name" },
          "application/problem+json",
        );
      if (req.method === "PUT") return send(200, { ...view, changed: true });
      if (req.method === "DELETE") return send(200, { name: "web", removed: true });
      if (req.url === "/v1/templates") return send(200, [view]);
      return send(200, view);
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  api = new VirtfleetApi({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: "t" });
});

afterAll(async () => {
  server.closeAllConnections();
  server.close();
  await once(server, "close");
});

describe("VirtfleetApi templates", () => {
  it("putTemplate sends the spec as the body of PUT /v1/templates/{name}, with the Idempotency-Key", async () => {
    const spec = { memoryMiB: 512, vcpus: 1, disks: [{ sizeGiB: 4, backing: "deb.qcow2" }] };
    const stored = await api.putTemplate("web", spec, { idempotencyKey: "k-1" });
    expect(stored).toMatchObject({ name: "web", version: 2, changed: true });
    expect(seen.at(-1)).toEqual({
      method: "PUT",
      url: "/v1/templates/web",
      idempotencyKey: "k-1",
      body: JSON.stringify(spec),
    });
  });

  it("listTemplates, getTemplate and removeTemplate hit their routes (names escaped) and parse the answers", async () => {
    expect(await api.listTemplates()).toEqual([expect.objectContaining({ name: "web", version: 2 })]);
    expect(seen.at(-1)).toMatchObject({ method: "GET", url: "/v1/templates" });
    expect((await api.getTemplate("web")).spec.memoryMiB).toBe(512);
    expect(await api.removeTemplate("we/b")).toEqual({ name: "web", removed: true });
    expect(seen.at(-1)).toMatchObject({ method: "DELETE", url: "/v1/templates/we%2Fb" });
  });

  it("a refusal is an ApiError with its code and field", async () => {
    const error = await api.removeTemplate("used").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ status: 409, code: "NAME_CLASH", field: "name" });
  });
});
