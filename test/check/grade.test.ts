/** Grading is pure: table-driven tests of the rule table in src/check/grade.ts. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { finding, sortFindings, type FindingId } from '../../src/check/findings.js';
import { gradeDowngrade, gradeFromFindings, worstGrade } from '../../src/check/grade.js';

const f = (...ids: FindingId[]) => ids.map((id) => finding(id, '', 'h:25'));

describe('grade', () => {
  const rows: Array<[FindingId[], boolean, string]> = [
    [[], true, 'A+'],
    [[], false, 'A'],
    [['cert.no-sni-different', 'probe.inconclusive'], true, 'A+'],
    [['tls.no-tls1_3'], false, 'A-'],
    [['tls.version.tls1', 'tls.cipher.cbc-sha1'], true, 'B'],
    [['cert.expired'], true, 'C'],
    [['cert.expired', 'cert.name-mismatch'], true, 'D'],
    [['starttls.injection'], true, 'F'],
    [['starttls.missing'], false, 'F'],
  ];
  for (const [ids, bonus, grade] of rows) {
    test(`${ids.join(', ') || 'no findings'}${bonus ? ' (TLS 1.3, trusted)' : ''} → ${grade}`, () => {
      assert.equal(gradeFromFindings(f(...ids), bonus), grade);
    });
  }

  test('findings sort critical first, then by id', () => {
    const sorted = sortFindings(f('tls.cipher.cbc-sha1', 'cert.expired', 'starttls.injection', 'auth.before-tls'));
    assert.deepEqual(sorted.map((x) => x.id), ['starttls.injection', 'auth.before-tls', 'cert.expired', 'tls.cipher.cbc-sha1']);
  });

  test('worst grade', () => {
    assert.equal(worstGrade('A+', 'B'), 'B');
    assert.equal(worstGrade('F', 'A'), 'F');
  });

  test('downgrade resistance', () => {
    const noDane = { published: false, validated: false, allMatch: false };
    assert.equal(gradeDowngrade({ mtaSts: null, dane: noDane }), 'none');
    assert.equal(gradeDowngrade({ mtaSts: { mode: 'testing', valid: true, allMxMatch: true, allCertsValid: true }, dane: noDane }), 'mta-sts-testing');
    assert.equal(gradeDowngrade({ mtaSts: { mode: 'enforce', valid: true, allMxMatch: true, allCertsValid: true }, dane: noDane }), 'mta-sts-enforce');
    // Issue 9 item 10: enforce with a failing MX is still enforce (the failure is its own finding).
    assert.equal(gradeDowngrade({ mtaSts: { mode: 'enforce', valid: true, allMxMatch: false, allCertsValid: true }, dane: noDane }), 'mta-sts-enforce');
    assert.equal(gradeDowngrade({ mtaSts: { mode: 'enforce', valid: true, allMxMatch: true, allCertsValid: false }, dane: noDane }), 'mta-sts-enforce');
    assert.equal(gradeDowngrade({ mtaSts: null, dane: { published: true, validated: false, allMatch: true } }), 'none');
    assert.equal(gradeDowngrade({ mtaSts: null, dane: { published: true, validated: true, allMatch: true } }), 'dane');
  });
});
