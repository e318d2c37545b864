import { parseOrThrow, TemplateName, type TemplatePutResult, TemplateSpec, type TemplateView } from "@virtfleet/core";
import type { Command } from "commander";
import { stringify } from "yaml";
import type { Backend } from "../backend.js";
import { formatTable } from "../output.js";
import { readSpecFile } from "../spec-file.js";

/** What a command module needs of the CLI: its backend, output, and the `--json` switch. */
export interface CommandHost {
  json: boolean;
  backend(): Backend;
  print(line: string): void;
}

/** The image a template boots from: its first disk's backing image, the install ISO or kernel, else `-`. */
export function templateImage(spec: TemplateSpec): string {
  const backing = spec.disks.find((d) => d.backing !== undefined)?.backing;
  if (backing !== undefined) return backing;
  if (spec.install.method === "cdrom") return spec.install.image;
  if (spec.install.method === "kernel") return spec.install.kernel;
  return "-";
}

/** `template web v2 (changed: VMs made from v1 are now stale)`. */
export function describePut(t: TemplatePutResult): string {
  const head = `template ${t.name} v${t.version}`;
  if (!t.changed) return `${head} (unchanged)`;
  if (t.version === 1) return `${head} (new)`;
  return `${head} (changed: VMs made from v${t.version - 1} are now stale)`;
}

/** `templates show`: the spec as YAML (ready for `templates put -f`), after a comment naming its version. */
export function templateYaml(t: TemplateView): string {
  const header = [
    `# template ${t.name} v${t.version}${t.tenant === undefined ? "" : ` (tenant ${t.tenant})`}`,
    `# created ${t.createdAt}, updated ${t.updatedAt}`,
  ];
  return `${header.join("\n")}\n${stringify(t.spec).trimEnd()}`;
}

const templateName = (raw: string) => parseOrThrow(TemplateName, raw, "NAME");

/** `virtfleet templates put|ls|show|rm`: named, versioned VM specs. */
export function addTemplatesCommand(program: Command, cli: CommandHost): void {
  const templates = program
    .command("templates")
    .description("named, versioned VM specs (pools and labs make VMs from them): put, ls, show, rm");
  const json = (flags: { json?: boolean }) => {
    cli.json = flags.json === true || templates.opts<{ json?: boolean }>().json === true;
  };

  templates
    .command("put")
    .description(
      "store a template from a YAML or JSON file (the API's VM spec without name, plus an optional guestReady); " +
        "a changed spec makes a new version, and what was made from older versions is stale",
    )
    .argument("<name>", "the template's name")
    .requiredOption("-f, --file <path>", "the template file (YAML or JSON)")
    .option("--json", "machine-readable output")
    .action(async (name: string, flags: { file: string; json?: boolean }) => {
      json(flags);
      const checked = templateName(name);
      const spec = readSpecFile(flags.file, TemplateSpec, "template");
      const stored = await cli.backend().putTemplate(checked, spec);
      cli.print(cli.json ? JSON.stringify(stored) : describePut(stored));
    });

  templates
    .command("ls")
    .description("every template: version, size, image, when it last changed")
    .option("--json", "machine-readable output")
    .action(async (flags: { json?: boolean }) => {
      json(flags);
      const list = await cli.backend().listTemplates();
      if (cli.json) return cli.print(JSON.stringify(list));
      cli.print(
        formatTable(
          ["NAME", "VERSION", "MEMORY MiB", "VCPUS", "IMAGE", "UPDATED"],
          list.map((t) => [
            t.name,
            String(t.version),
            String(t.spec.memoryMiB),
            String(t.spec.vcpus),
            templateImage(t.spec),
            t.updatedAt,
          ]),
        ),
      );
    });

  templates
    .command("show")
    .description("a template's spec as YAML (--json: the whole template as JSON)")
    .argument("<name>", "the template's name")
    .option("--json", "machine-readable output")
    .action(async (name: string, flags: { json?: boolean }) => {
      json(flags);
      const t = await cli.backend().getTemplate(templateName(name));
      cli.print(cli.json ? JSON.stringify(t) : templateYaml(t));
    });

  templates
    .command("rm")
    .description("remove a template (refused while a pool makes VMs from it; VMs made from it stay)")
    .argument("<name>", "the template's name")
    .option("--json", "machine-readable output")
    .action(async (name: string, flags: { json?: boolean }) => {
      json(flags);
      const checked = templateName(name);
      await cli.backend().removeTemplate(checked);
      cli.print(cli.json ? JSON.stringify({ name: checked, removed: true }) : `template ${checked} removed`);
    });
}
