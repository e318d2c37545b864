import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LabFile, LabUpRequest, ValidationError } from "@virtfleet/core";
import { afterAll, describe, expect, it } from "vitest";
import { readSpecFile, SpecFileError } from "../spec-file.js";

// `lab up -f FILE`: the lab file (YAML or JSON) as LabFile reads it, and the errors that name the field.

const dir = mkdtempSync(join(tmpdir(), "lb-lab-file-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function fieldOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return (error as ValidationError).field;
  }
  throw new Error("expected a ValidationError");
}

const labYaml = `# a three-VM lab
vms:
  - name: web
    template: web-tpl
    count: 2
  - name: db
    template: db-tpl
labels:
  course: net101
antiAffinity: true
`;

describe("lab files", () => {
  it("reads YAML with defaults filled in, and the same lab as JSON", () => {
    const lab = readSpecFile(file("lab.yaml", labYaml), LabFile, "lab");
    expect(lab).toEqual({
      vms: [
        { name: "web", template: "web-tpl", count: 2 },
        { name: "db", template: "db-tpl", count: 1 },
      ],
      labels: { course: "net101" },
      antiAffinity: true,
      rollbackOnFailure: true,
    });
    const json = JSON.stringify({
      vms: [
        { name: "web", template: "web-tpl", count: 2 },
        { name: "db", template: "db-tpl" },
      ],
      labels: { course: "net101" },
      antiAffinity: true,
    });
    expect(readSpecFile(file("lab.json", json), LabFile, "lab")).toEqual(lab);
  });

  it("names the field that is wrong", () => {
    const cases: [string, string][] = [
      ["vms: []\n", "vms"],
      ["vms:\n  - name: web\n", "vms.0.template"],
      ["vms:\n  - name: Web_1\n    template: t\n", "vms.0.name"],
      ["vms:\n  - name: web\n    template: t\n    count: 0\n", "vms.0.count"],
      ["vms:\n  - name: web\n    template: t\n  - name: web\n    template: u\n", "vms.1.name"],
      ["vms:\n  - name: web\n    template: t\n    count: 101\n", "vms.0.count"],
      ["vms:\n  - name: web\n    template: t\n    memory: 512\n", "vms.0"],
      ["vms:\n  - name: web\n    template: t\nlabels:\n  'bad key!': x\n", "labels.bad key!"],
      ["vms:\n  - name: web\n    template: t\nrollbackOnFailure: maybe\n", "rollbackOnFailure"],
      ["vms:\n  - name: web\n    template: t\nttl: 2h\n", "(root)"],
    ];
    for (const [text, field] of cases) {
      const path = file("bad.yaml", text);
      expect(
        fieldOf(() => readSpecFile(path, LabFile, "lab")),
        text,
      ).toBe(field);
    }
    const many = `vms:\n${Array.from({ length: 3 }, (_, i) => `  - name: v${i}\n    template: t\n    count: 100\n`).join("")}`;
    expect(fieldOf(() => readSpecFile(file("many.yaml", many), LabFile, "lab"))).toBe("vms");
    expect(() => readSpecFile(file("many.yaml", many), LabFile, "lab")).toThrow(SpecFileError);
  });

  it("a request: name, ttl and max lifetime as durations", () => {
    const lab = { vms: [{ name: "web", template: "t" }] };
    expect(LabUpRequest.parse({ name: "lab1", lab, ttl: "2h", maxLifetime: "1d" })).toMatchObject({
      ttl: 7_200_000,
      maxLifetime: 86_400_000,
    });
    expect(LabUpRequest.safeParse({ name: "lab1", lab, ttl: "2 hours" }).error?.issues[0]?.path).toEqual(["ttl"]);
    expect(LabUpRequest.safeParse({ name: "a".repeat(31), lab }).error?.issues[0]?.path).toEqual(["name"]);
  });
});
