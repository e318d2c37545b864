import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LabFile, TemplateSpec, ValidationError } from "@virtfleet/core";
import { afterAll, describe, expect, it } from "vitest";
import { readSpecFile, SpecFileError } from "./spec-file.js";

const dir = mkdtempSync(join(tmpdir(), "tp-spec-file-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** The ValidationError `fn` throws (fails the test when it throws none). */
function thrown(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    return error as ValidationError;
  }
  throw new Error("expected a ValidationError");
}

const webYaml = `# a web server
memoryMiB: 512
vcpus: 2
disks:
  - sizeGiB: 4
    backing: debian12.qcow2
install: { method: import }
labels:
  role: web
  ok: yes
`;

describe("readSpecFile", () => {
  it("reads a YAML template (YAML 1.2: `yes` stays a string)", () => {
    const spec = readSpecFile(file("web.yaml", webYaml), TemplateSpec, "template");
    expect(spec.memoryMiB).toBe(512);
    expect(spec.vcpus).toBe(2);
    expect(spec.disks[0]).toMatchObject({ sizeGiB: 4, backing: "debian12.qcow2" });
    expect(spec.labels).toEqual({ role: "web", ok: "yes" });
  });

  it("reads a JSON template to the same spec as the YAML one", () => {
    const json = JSON.stringify({
      memoryMiB: 512,
      vcpus: 2,
      disks: [{ sizeGiB: 4, backing: "debian12.qcow2" }],
      install: { method: "import" },
      labels: { role: "web", ok: "yes" },
    });
    const fromJson = readSpecFile(file("web.json", json), TemplateSpec, "template");
    expect(fromJson).toEqual(readSpecFile(file("web2.yaml", webYaml), TemplateSpec, "template"));
  });

  it("names the bad field inside the file, and the file in the message", () => {
    const path = file("bad.yaml", webYaml.replace("memoryMiB: 512", "memoryMiB: lots"));
    const error = thrown(() => readSpecFile(path, TemplateSpec, "template"));
    expect(error).toBeInstanceOf(SpecFileError);
    expect(error.code).toBe("INVALID_SPEC");
    expect(error.field).toBe("memoryMiB");
    expect(error.message).toContain(`template file ${path}`);
    expect((error as SpecFileError).file).toBe(path);
  });

  it("names a nested field by its dotted path", () => {
    const path = file("lab.yaml", "vms:\n  - name: web\n    template: web\n  - name: db\n    template: Not_A_Name\n");
    const error = thrown(() => readSpecFile(path, LabFile, "lab"));
    expect(error.field).toBe("vms.1.template");
    expect(error.message).toContain(`lab file ${path}`);
  });

  it("refuses an unknown key (a typo is not silently ignored)", () => {
    const error = thrown(() => readSpecFile(file("typo.yaml", `${webYaml}memroy: 1\n`), TemplateSpec, "template"));
    expect(error).toBeInstanceOf(SpecFileError);
    expect(error.message).toContain("memroy");
  });

  it("a template file must not carry a name", () => {
    const error = thrown(() => readSpecFile(file("named.yaml", `name: web\n${webYaml}`), TemplateSpec, "template"));
    expect(error.message).toContain("name");
  });

  it("a missing file is INVALID_SPEC naming -f", () => {
    const error = thrown(() => readSpecFile(join(dir, "nope.yaml"), TemplateSpec, "template"));
    expect(error).not.toBeInstanceOf(SpecFileError);
    expect(error.code).toBe("INVALID_SPEC");
    expect(error.field).toBe("-f");
    expect(error.message).toContain("nope.yaml");
    expect(error.message).toContain("ENOENT");
  });

  it("a directory is INVALID_SPEC naming -f", () => {
    const sub = join(dir, "a-dir");
    mkdirSync(sub);
    const error = thrown(() => readSpecFile(sub, TemplateSpec, "template"));
    expect(error.field).toBe("-f");
    expect(error.message).toContain("not a file");
  });

  it("bad YAML is INVALID_SPEC naming -f, the file and the line", () => {
    const path = file("broken.yaml", "memoryMiB: 512\ndisks: [ { sizeGiB: 4 }\n");
    const error = thrown(() => readSpecFile(path, TemplateSpec, "template"));
    expect(error.field).toBe("-f");
    expect(error.message).toContain(path);
    expect(error.message).toMatch(/line \d+/);
  });

  it("a duplicate key is bad YAML", () => {
    const error = thrown(() =>
      readSpecFile(file("dup.yaml", "memoryMiB: 512\nmemoryMiB: 1024\n"), TemplateSpec, "template"),
    );
    expect(error.field).toBe("-f");
    expect(error.message).toContain("unique");
  });

  it("an empty file (or only comments) is INVALID_SPEC naming -f", () => {
    for (const text of ["", "# nothing here\n"]) {
      const error = thrown(() => readSpecFile(file("empty.yaml", text), TemplateSpec, "template"));
      expect(error.field).toBe("-f");
      expect(error.message).toContain("empty");
    }
  });

  it("a file that is a list, not a mapping, names the root", () => {
    const error = thrown(() => readSpecFile(file("list.yaml", "- 1\n- 2\n"), TemplateSpec, "template"));
    expect(error).toBeInstanceOf(SpecFileError);
    expect(error.field).toBe("(root)");
  });
});
